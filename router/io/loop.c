/* The event loop (see loop.h): epoll plus a binary min-heap of timers keyed by due time. */
#include "grow.h"
#include "loop.h"
#include "mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

struct watch {
	int fd;
	kr_io_fn fn;
	void *arg;
	uint32_t events; /* the epoll interest registered for fd */
	bool parked;	 /* kr_loop_park: still registered, nobody's callback */
};

struct kr_timer {
	struct kr_loop *l;
	kr_timer_fn fn;
	void *arg;
	uint64_t due;
	size_t heap_index; /* SIZE_MAX when not armed */
};

struct kr_loop {
	int ep;
	struct watch **watches; /* indexed by fd */
	size_t nwatches;
	struct kr_timer **heap;
	size_t nheap, capheap;
};

uint64_t kr_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t kr_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct kr_loop *kr_loop_new(void)
{
	struct kr_loop *l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	if (l->ep < 0) {
		free(l);
		return NULL;
	}
	return l;
}

void kr_loop_free(struct kr_loop *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->nwatches; i++)
		free(l->watches[i]);
	free(l->watches);
	for (size_t i = 0; i < l->nheap; i++)
		l->heap[i]->heap_index = SIZE_MAX;
	free(l->heap);
	close(l->ep);
	free(l);
}

int kr_loop_watch(struct kr_loop *l, int fd, unsigned events, kr_io_fn fn, void *arg)
{
	if (fd < 0) {
		errno = EBADF;
		return -1;
	}
	if ((size_t)fd >= l->nwatches) {
		size_t n = (size_t)fd + 16;
		struct watch **w = realloc(l->watches, n * sizeof *w);
		if (!w)
			return -1;
		memset(w + l->nwatches, 0, (n - l->nwatches) * sizeof *w);
		l->watches = w;
		l->nwatches = n;
	}
	struct epoll_event ev = {0};
	ev.events = (events & KR_IO_READ ? EPOLLIN : 0) | (events & KR_IO_WRITE ? EPOLLOUT : 0);
	ev.data.fd = fd;
	struct watch *w = l->watches[fd];
	if (!w) {
		w = calloc(1, sizeof *w);
		if (!w)
			return -1;
		if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			free(w);
			return -1;
		}
		l->watches[fd] = w;
	} else if (w->parked) {
		/* fd may have been closed since it was parked (which ends its registration) and be
		 * a new file now: then there is nothing to modify, and it is added */
		if (epoll_ctl(l->ep, EPOLL_CTL_MOD, fd, &ev) != 0 &&
		    (errno != ENOENT || epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) != 0))
			return -1;
	} else if (w->events != ev.events && epoll_ctl(l->ep, EPOLL_CTL_MOD, fd, &ev) != 0) {
		return -1;
	}
	w->fd = fd;
	w->fn = fn;
	w->arg = arg;
	w->events = ev.events;
	w->parked = false;
	return 0;
}

void kr_loop_unwatch(struct kr_loop *l, int fd)
{
	if (fd < 0 || (size_t)fd >= l->nwatches || !l->watches[fd])
		return;
	epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL);
	free(l->watches[fd]);
	l->watches[fd] = NULL;
}

void kr_loop_park(struct kr_loop *l, int fd)
{
	if (fd >= 0 && (size_t)fd < l->nwatches && l->watches[fd])
		l->watches[fd]->parked = true;
}

static void heap_swap(struct kr_loop *l, size_t a, size_t b)
{
	struct kr_timer *t = l->heap[a];
	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_index = a;
	l->heap[b]->heap_index = b;
}

static void heap_up(struct kr_loop *l, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (l->heap[p]->due <= l->heap[i]->due)
			break;
		heap_swap(l, p, i);
		i = p;
	}
}

static void heap_down(struct kr_loop *l, size_t i)
{
	for (;;) {
		size_t a = 2 * i + 1, b = a + 1, m = i;
		if (a < l->nheap && l->heap[a]->due < l->heap[m]->due)
			m = a;
		if (b < l->nheap && l->heap[b]->due < l->heap[m]->due)
			m = b;
		if (m == i)
			return;
		heap_swap(l, i, m);
		i = m;
	}
}

static void heap_remove(struct kr_loop *l, struct kr_timer *t)
{
	size_t i = t->heap_index;
	if (i == SIZE_MAX)
		return;
	l->nheap--;
	if (i != l->nheap) {
		l->heap[i] = l->heap[l->nheap];
		l->heap[i]->heap_index = i;
		heap_down(l, i);
		heap_up(l, i);
	}
	t->heap_index = SIZE_MAX;
}

struct kr_timer *kr_timer_new(struct kr_loop *l, kr_timer_fn fn, void *arg)
{
	struct kr_timer *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->l = l;
	t->fn = fn;
	t->arg = arg;
	t->heap_index = SIZE_MAX;
	return t;
}

void kr_timer_start(struct kr_timer *t, uint64_t delay_ms)
{
	struct kr_loop *l = t->l;
	heap_remove(l, t);
	if (!kr_grow(&l->heap, &l->capheap, l->nheap + 1, sizeof *l->heap, 64))
		return; /* the timer stays stopped; callers treat it as not armed */
	t->due = kr_now_ms() + delay_ms;
	t->heap_index = l->nheap;
	l->heap[l->nheap++] = t;
	heap_up(l, t->heap_index);
}

void kr_timer_stop(struct kr_timer *t)
{
	if (t)
		heap_remove(t->l, t);
}

bool kr_timer_active(const struct kr_timer *t)
{
	return t && t->heap_index != SIZE_MAX;
}

void kr_timer_free(struct kr_timer *t)
{
	if (!t)
		return;
	heap_remove(t->l, t);
	free(t);
}

int kr_loop_run_once(struct kr_loop *l, int max_wait_ms)
{
	int wait = max_wait_ms;
	if (l->nheap) {
		uint64_t now = kr_now_ms(), due = l->heap[0]->due;
		int until = due <= now ? 0 : (int)(due - now > 3600000 ? 3600000 : due - now);
		if (wait < 0 || until < wait)
			wait = until;
	}
	kr_mem_heap_grown(); /* what the last round's allocations grew the heap by */
	struct epoll_event evs[64];
	int n = epoll_wait(l->ep, evs, 64, wait);
	if (n < 0 && errno != EINTR)
		return -1;
	int ran = 0;
	for (int i = 0; i < n; i++) {
		int fd = evs[i].data.fd;
		if ((size_t)fd >= l->nwatches || !l->watches[fd])
			continue; /* unwatched by an earlier callback of this round */
		struct watch *w = l->watches[fd];
		if (w->parked) {
			/* nobody waits for it: it leaves epoll now, or level-triggered it would
			 * wake every round */
			epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL);
			free(w);
			l->watches[fd] = NULL;
			continue;
		}
		unsigned e = 0;
		if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			e |= KR_IO_READ;
		if (evs[i].events & (EPOLLOUT | EPOLLERR))
			e |= KR_IO_WRITE;
		w->fn(l, fd, e, w->arg);
		ran++;
	}
	uint64_t now = kr_now_ms();
	/* run the timers due now; ones re-armed by their callbacks wait for the next round */
	size_t budget = l->nheap;
	while (l->nheap && l->heap[0]->due <= now && budget--) {
		struct kr_timer *t = l->heap[0];
		heap_remove(l, t);
		t->fn(l, t, t->arg);
		ran++;
	}
	return ran;
}
