/* Unit tests for router/io/loop.h: watching descriptors, parking one between uses (curl's kept-alive
 * sockets), a parked descriptor that fires or is closed and its number reused, and timers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <unistd.h>

#include "loop.h"

struct seen {
	int calls;
	int fd;
	unsigned events;
};

static void on_io(struct kr_loop *l, int fd, unsigned events, void *arg)
{
	(void)l;
	struct seen *s = arg;
	s->calls++;
	s->fd = fd;
	s->events = events;
}

static void drain(int fd)
{
	char b[64];
	while (read(fd, b, sizeof b) > 0) {
	}
}

static void test_a_watched_pipe_calls_back_when_readable(void **state)
{
	(void)state;
	struct kr_loop *l = kr_loop_new();
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	struct seen s = {0};
	assert_int_equal(kr_loop_watch(l, p[0], KR_IO_READ, on_io, &s), 0);
	assert_int_equal(kr_loop_run_once(l, 0), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(kr_loop_run_once(l, 1000), 1);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.fd, p[0]);
	assert_int_equal(s.events, KR_IO_READ);
	/* watched with no interest: registered but quiet */
	assert_int_equal(kr_loop_watch(l, p[0], 0, on_io, &s), 0);
	assert_int_equal(kr_loop_run_once(l, 0), 0);
	kr_loop_unwatch(l, p[0]);
	assert_int_equal(kr_loop_run_once(l, 0), 0);
	assert_int_equal(s.calls, 1);
	close(p[0]);
	close(p[1]);
	kr_loop_free(l);
}

static void test_a_parked_descriptor_is_quiet_and_watched_again(void **state)
{
	(void)state;
	struct kr_loop *l = kr_loop_new();
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	struct seen s = {0};
	assert_int_equal(kr_loop_watch(l, p[0], KR_IO_READ, on_io, &s), 0);
	kr_loop_park(l, p[0]);
	/* nothing to read: parked, nothing happens */
	assert_int_equal(kr_loop_run_once(l, 0), 0);
	/* watched again with the same interest, and it calls back */
	assert_int_equal(kr_loop_watch(l, p[0], KR_IO_READ, on_io, &s), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(kr_loop_run_once(l, 1000), 1);
	assert_int_equal(s.calls, 1);
	drain(p[0]);
	/* parked and with a different interest: writable ends are writable at once */
	kr_loop_park(l, p[1]); /* never watched: nothing to park */
	assert_int_equal(kr_loop_watch(l, p[1], KR_IO_WRITE, on_io, &s), 0);
	kr_loop_park(l, p[1]);
	assert_int_equal(kr_loop_watch(l, p[1], KR_IO_WRITE, on_io, &s), 0);
	assert_int_equal(kr_loop_run_once(l, 1000), 1);
	assert_int_equal(s.calls, 2);
	assert_int_equal(s.fd, p[1]);
	assert_int_equal(s.events, KR_IO_WRITE);
	kr_loop_unwatch(l, p[1]);
	kr_loop_unwatch(l, p[0]);
	close(p[0]);
	close(p[1]);
	kr_loop_free(l);
}

static void test_a_parked_descriptor_that_fires_leaves_the_loop(void **state)
{
	(void)state;
	struct kr_loop *l = kr_loop_new();
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	struct seen s = {0};
	assert_int_equal(kr_loop_watch(l, p[0], KR_IO_READ, on_io, &s), 0);
	kr_loop_park(l, p[0]);
	/* readable while parked (a kept-alive connection the server closed): no callback, and it
	 * leaves epoll, so that it does not wake every round (level-triggered) */
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(kr_loop_run_once(l, 1000), 0);
	assert_int_equal(kr_loop_run_once(l, 0), 0);
	assert_int_equal(s.calls, 0);
	/* and watching it again registers it again */
	assert_int_equal(kr_loop_watch(l, p[0], KR_IO_READ, on_io, &s), 0);
	assert_int_equal(kr_loop_run_once(l, 1000), 1);
	assert_int_equal(s.calls, 1);
	kr_loop_unwatch(l, p[0]);
	close(p[0]);
	close(p[1]);
	kr_loop_free(l);
}

static void test_a_parked_number_closed_and_reused_is_registered(void **state)
{
	(void)state;
	struct kr_loop *l = kr_loop_new();
	int p[2], q[2];
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	struct seen s = {0};
	assert_int_equal(kr_loop_watch(l, p[0], KR_IO_READ, on_io, &s), 0);
	kr_loop_park(l, p[0]);
	int number = p[0];
	/* closing it ends its registration; a new pipe gets the lowest free number: the same */
	close(p[0]);
	assert_int_equal(pipe2(q, O_NONBLOCK), 0);
	assert_int_equal(q[0], number);
	assert_int_equal(kr_loop_watch(l, q[0], KR_IO_READ, on_io, &s), 0);
	assert_int_equal(write(q[1], "y", 1), 1);
	assert_int_equal(kr_loop_run_once(l, 1000), 1);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.fd, number);
	kr_loop_unwatch(l, q[0]);
	close(q[0]);
	close(q[1]);
	close(p[1]);
	kr_loop_free(l);
}

static void on_timer(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	(*(int *)arg)++;
}

static void test_timers_run_when_due_and_not_when_stopped(void **state)
{
	(void)state;
	struct kr_loop *l = kr_loop_new();
	int fired = 0, other = 0;
	struct kr_timer *t = kr_timer_new(l, on_timer, &fired);
	struct kr_timer *u = kr_timer_new(l, on_timer, &other);
	kr_timer_start(t, 0);
	kr_timer_start(u, 0);
	assert_true(kr_timer_active(t));
	kr_timer_stop(u);
	assert_false(kr_timer_active(u));
	assert_int_equal(kr_loop_run_once(l, 1000), 1);
	assert_int_equal(fired, 1);
	assert_int_equal(other, 0);
	assert_false(kr_timer_active(t));
	kr_timer_free(t);
	kr_timer_free(u);
	kr_loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_watched_pipe_calls_back_when_readable),
		cmocka_unit_test(test_a_parked_descriptor_is_quiet_and_watched_again),
		cmocka_unit_test(test_a_parked_descriptor_that_fires_leaves_the_loop),
		cmocka_unit_test(test_a_parked_number_closed_and_reused_is_registered),
		cmocka_unit_test(test_timers_run_when_due_and_not_when_stopped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
