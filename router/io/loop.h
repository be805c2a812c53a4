/* kr_loop: the one event loop. epoll for file descriptors, a binary heap of timers, signals as a
 * file descriptor (signalfd). Everything in kmsrouter that waits — sockets of curl multi, the
 * Kafka queue, followed files, retry back-offs, signals — waits here, on one thread; nothing in a
 * callback may block. Not thread-safe: only the loop's thread touches it. */
#ifndef KR_LOOP_H
#define KR_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#define KR_IO_READ 1u
#define KR_IO_WRITE 2u

struct kr_loop;
struct kr_timer;

typedef void (*kr_io_fn)(struct kr_loop *l, int fd, unsigned events, void *arg);
typedef void (*kr_timer_fn)(struct kr_loop *l, struct kr_timer *t, void *arg);

/* Monotonic milliseconds. */
uint64_t kr_now_ms(void);
/* Wall-clock milliseconds since the epoch. */
uint64_t kr_wall_ms(void);

/* Returns a new loop or NULL; free with kr_loop_free (after every watch and timer is gone). */
struct kr_loop *kr_loop_new(void);
void kr_loop_free(struct kr_loop *l);

/* Watches fd for events (KR_IO_READ | KR_IO_WRITE; 0 keeps it registered but quiet); calling it
 * again changes the interest. Returns 0 or -1 (errno set). */
int kr_loop_watch(struct kr_loop *l, int fd, unsigned events, kr_io_fn fn, void *arg);
void kr_loop_unwatch(struct kr_loop *l, int fd);
/* Stops calling back for fd like kr_loop_unwatch, but leaves it in epoll, so that watching it again
 * with the same interest costs no system call (curl parks a kept-alive connection's socket between
 * requests). It leaves epoll when it next fires, is closed or is unwatched. Only for a descriptor
 * of which no duplicate outlives it (epoll registers the open file, not the number): if fd is
 * closed and its number reused, kr_loop_watch registers the new file. */
void kr_loop_park(struct kr_loop *l, int fd);

/* Timers are owned by the caller: new, start (re-arms), stop, free. */
struct kr_timer *kr_timer_new(struct kr_loop *l, kr_timer_fn fn, void *arg);
void kr_timer_start(struct kr_timer *t, uint64_t delay_ms);
void kr_timer_stop(struct kr_timer *t);
bool kr_timer_active(const struct kr_timer *t);
void kr_timer_free(struct kr_timer *t);

/* Waits at most max_wait_ms (-1: until something happens) and runs the callbacks that are due.
 * Returns the number of callbacks run, or -1 on an epoll error. */
int kr_loop_run_once(struct kr_loop *l, int max_wait_ms);

#endif
