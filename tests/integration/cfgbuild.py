# SPDX-License-Identifier: MIT
"""Small builders for the configs the rule, action, algorithm and stickiness tests share."""


def group(name, targets, **opts):
    """An HTTP target group with health checks off."""
    g = {"name": name, "protocol": "HTTP", "health_check": {"enabled": False},
         "targets": list(targets)}
    g.update(opts)
    return g


def fwd(name):
    """A forward action to one group."""
    return {"forward": {"target_groups": [{"name": name}]}}
