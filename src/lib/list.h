/* SPDX-License-Identifier: MIT */
/* The one list: intrusive, doubly linked and circular, as nginx's ngx_queue_t and libuv's
 * queue. An element embeds a struct bth_list; a head is a struct bth_list of its own. Insert
 * and remove are O(1) and never allocate; removing an element leaves it pointing at itself,
 * so removing it twice is harmless. Not thread-safe: a list belongs to one thread. */
#ifndef BERTH_LIST_H
#define BERTH_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct bth_list {
    struct bth_list *prev, *next;
};

static inline void bth_list_init(struct bth_list *l)
{
    l->prev = l->next = l;
}

static inline bool bth_list_empty(const struct bth_list *head)
{
    return head->next == head;
}

/* Inserts <e> first in <head>. */
static inline void bth_list_push(struct bth_list *head, struct bth_list *e)
{
    e->next = head->next;
    e->prev = head;
    head->next->prev = e;
    head->next = e;
}

/* Unlinks <e> from whatever list it is on (nothing when it is on none). */
static inline void bth_list_remove(struct bth_list *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = e;
}

/* The struct of type <type> whose member <member> is the list element <e>. */
#define bth_list_entry(e, type, member) ((type *)(void *)((char *)(e)-offsetof(type, member)))

/* Walks <head>; <it> and <tmp> are struct bth_list pointers, and the loop body may remove
 * (and free) the element at <it>. */
#define bth_list_foreach_safe(it, tmp, head)                                                       \
    for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head); (it) = (tmp), (tmp) = (it)->next)

#endif /* BERTH_LIST_H */
