/* Unit tests for parsers/view.h: the path trie (kr_paths) and the per-event value view (kr_view). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "view.h"

/* Adds a dotted path ("detail.key-id"; no escaping, for tests only) and returns its slot. */
static uint32_t add_path(struct kr_paths *p, const char *dotted)
{
	const char *segs[16];
	size_t lens[16], n = 0;
	const char *s = dotted;
	for (;;) {
		const char *dot = strchr(s, '.');
		segs[n] = s;
		lens[n] = dot ? (size_t)(dot - s) : strlen(s);
		n++;
		if (!dot)
			break;
		s = dot + 1;
	}
	uint32_t slot = UINT32_MAX;
	assert_int_equal(kr_paths_add(p, segs, lens, n, &slot), KR_OK);
	return slot;
}

static const struct kr_path_node *walk(const struct kr_paths *p, const char *dotted)
{
	const struct kr_path_node *node = p->root;
	const char *s = dotted;
	for (;;) {
		const char *dot = strchr(s, '.');
		size_t len = dot ? (size_t)(dot - s) : strlen(s);
		node = kr_path_child(node, s, len);
		if (!node || !dot)
			return node;
		s = dot + 1;
	}
}

/* ---- kr_paths ---- */

static void test_equal_paths_share_a_slot_and_different_paths_do_not(void **state)
{
	(void)state;
	struct kr_paths *p = kr_paths_new();
	assert_non_null(p);
	uint32_t a = add_path(p, "detail.key-id");
	uint32_t b = add_path(p, "source");
	uint32_t c = add_path(p, "detail");
	uint32_t d = add_path(p, "detail.key-state");
	assert_int_equal(a, 0);
	assert_int_equal(b, 1);
	assert_int_equal(c, 2);
	assert_int_equal(d, 3);
	assert_int_equal(p->nslots, 4);
	/* adding again returns the same slot and allocates nothing new */
	assert_int_equal(add_path(p, "detail.key-id"), a);
	assert_int_equal(add_path(p, "source"), b);
	assert_int_equal(add_path(p, "detail"), c);
	assert_int_equal(p->nslots, 4);
	assert_string_equal(p->names[a], "detail.key-id");
	assert_string_equal(p->names[c], "detail");
	kr_paths_free(p);
}

static void test_segments_are_compared_by_length_not_nul(void **state)
{
	(void)state;
	struct kr_paths *p = kr_paths_new();
	/* segments given by pointer and length into larger buffers */
	const char *buf = "detailXXX";
	const char *segs1[] = {buf};
	size_t lens1[] = {6};
	uint32_t s1, s2, s3;
	assert_int_equal(kr_paths_add(p, segs1, lens1, 1, &s1), KR_OK);
	assert_int_equal(add_path(p, "detail"), s1);
	/* "a.b" as one segment is not the path a -> b */
	const char *segs2[] = {"a.b"};
	size_t lens2[] = {3};
	assert_int_equal(kr_paths_add(p, segs2, lens2, 1, &s2), KR_OK);
	s3 = add_path(p, "a.b");
	assert_int_not_equal(s2, s3);
	/* a key containing a NUL byte differs from its prefix */
	const char *segs3[] = {"k\0z"};
	size_t lens3[] = {3};
	uint32_t s4;
	assert_int_equal(kr_paths_add(p, segs3, lens3, 1, &s4), KR_OK);
	assert_int_not_equal(s4, add_path(p, "k"));
	kr_paths_free(p);
}

static void test_path_child_and_slot_walk_the_trie(void **state)
{
	(void)state;
	struct kr_paths *p = kr_paths_new();
	uint32_t kid = add_path(p, "detail.key-id");
	uint32_t src = add_path(p, "source");
	const struct kr_path_node *detail = kr_path_child(p->root, "detail", 6);
	assert_non_null(detail);
	assert_int_equal(kr_path_slot(detail), -1); /* no rule tests "detail" itself */
	const struct kr_path_node *k = kr_path_child(detail, "key-id", 6);
	assert_non_null(k);
	assert_int_equal(kr_path_slot(k), (int32_t)kid);
	assert_int_equal(kr_path_slot(kr_path_child(p->root, "source", 6)), (int32_t)src);
	/* nothing below a leaf, nothing for unknown keys, NULL propagates */
	assert_null(kr_path_child(k, "x", 1));
	assert_null(kr_path_child(p->root, "detail-type", 11));
	assert_null(kr_path_child(p->root, "detaiL", 6));
	assert_null(kr_path_child(p->root, "", 0));
	assert_null(kr_path_child(detail, "key-i", 5));
	assert_null(kr_path_child(NULL, "detail", 6));
	assert_int_equal(kr_path_slot(NULL), -1);
	/* a key whose length differs by 64 passes the length mask but must still not match */
	char longkey[71];
	memset(longkey, 's', sizeof longkey);
	assert_null(kr_path_child(p->root, longkey, 70));
	kr_paths_free(p);
}

static void test_many_children_stay_reachable_with_stable_slots(void **state)
{
	(void)state;
	struct kr_paths *p = kr_paths_new();
	uint32_t slots[300];
	char name[32];
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof name, "detail.k%d", i);
		slots[i] = add_path(p, name);
		assert_int_equal(slots[i], (uint32_t)i);
	}
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof name, "detail.k%d", i);
		assert_int_equal(add_path(p, name), slots[i]);
		const struct kr_path_node *n = walk(p, name);
		assert_non_null(n);
		assert_int_equal(kr_path_slot(n), (int32_t)slots[i]);
		assert_string_equal(p->names[slots[i]], name);
	}
	assert_null(walk(p, "detail.k300"));
	assert_int_equal(p->nslots, 300);
	kr_paths_free(p);
}

static void test_the_empty_key_is_a_path_segment_like_any_other(void **state)
{
	(void)state;
	struct kr_paths *p = kr_paths_new();
	const char *segs[] = {"", "x"};
	size_t lens[] = {0, 1};
	uint32_t s;
	assert_int_equal(kr_paths_add(p, segs, lens, 2, &s), KR_OK);
	const struct kr_path_node *e = kr_path_child(p->root, "", 0);
	assert_non_null(e);
	assert_int_equal(kr_path_slot(kr_path_child(e, "x", 1)), (int32_t)s);
	assert_null(kr_path_child(p->root, "x", 1));
	kr_paths_free(p);
}

/* ---- kr_view ---- */

struct fixture {
	struct kr_paths *p;
	uint32_t a, b, c;
	struct kr_view v;
};

static int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof f);
	f.p = kr_paths_new();
	if (!f.p)
		return -1;
	f.a = add_path(f.p, "a");
	f.b = add_path(f.p, "b");
	f.c = add_path(f.p, "c.d");
	if (kr_view_init(&f.v, f.p) != KR_OK)
		return -1;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	kr_view_fini(&f->v);
	kr_paths_free(f->p);
	return 0;
}

static void add(struct kr_view *v, uint32_t slot, enum kr_vtype t, const char *text)
{
	assert_int_equal(kr_view_add(v, slot, t, text, strlen(text), NULL, 0), KR_OK);
}

static void assert_values(const struct kr_view *v, uint32_t slot, const char *const *want,
			  size_t n)
{
	size_t i = 0;
	for (const struct kr_value *val = kr_view_first(v, slot); val; val = kr_view_next(v, val)) {
		assert_true(i < n);
		assert_int_equal(val->len, strlen(want[i]));
		assert_string_equal(kr_view_text(v, val), want[i]); /* NUL-terminated copy */
		i++;
	}
	assert_int_equal(i, n);
}

static void test_view_keeps_values_per_slot_in_the_order_added(void **state)
{
	struct fixture *f = *state;
	struct kr_view *v = &f->v;
	add(v, f->b, KR_V_STRING, "b1");
	add(v, f->a, KR_V_NUMBER, "3.0e2");
	add(v, f->b, KR_V_STRING, "b2");
	add(v, f->b, KR_V_NULL, "");
	add(v, f->a, KR_V_TRUE, "");
	const char *const wa[] = {"3.0e2", ""}, *const wb[] = {"b1", "b2", ""};
	assert_values(v, f->a, wa, 2);
	assert_values(v, f->b, wb, 3);
	assert_null(kr_view_first(v, f->c));
	assert_int_equal(kr_view_first(v, f->a)->type, KR_V_NUMBER);
	assert_int_equal(kr_view_next(v, kr_view_first(v, f->a))->type, KR_V_TRUE);
	/* slots are listed once, in first-seen order */
	assert_int_equal(v->ntouched, 2);
	assert_int_equal(v->touched[0], f->b);
	assert_int_equal(v->touched[1], f->a);
	assert_false(v->has_trails);
}

static void test_view_copies_text_so_the_caller_may_reuse_its_buffer(void **state)
{
	struct fixture *f = *state;
	char buf[8] = "first";
	assert_int_equal(kr_view_add(&f->v, f->a, KR_V_STRING, buf, 5, NULL, 0), KR_OK);
	strcpy(buf, "other");
	assert_string_equal(kr_view_text(&f->v, kr_view_first(&f->v, f->a)), "first");
}

static void test_view_reset_empties_every_slot_and_can_be_refilled(void **state)
{
	struct fixture *f = *state;
	struct kr_view *v = &f->v;
	add(v, f->a, KR_V_STRING, "old");
	add(v, f->c, KR_V_STRING, "old-c");
	uint32_t trail[] = {0, 1};
	assert_int_equal(kr_view_add(v, f->b, KR_V_STRING, "t", 1, trail, 2), KR_OK);
	assert_true(v->has_trails);
	kr_view_reset(v);
	assert_null(kr_view_first(v, f->a));
	assert_null(kr_view_first(v, f->b));
	assert_null(kr_view_first(v, f->c));
	assert_int_equal(v->ntouched, 0);
	assert_false(v->has_trails);
	add(v, f->c, KR_V_STRING, "new");
	const char *const wc[] = {"new"};
	assert_values(v, f->c, wc, 1);
	assert_null(kr_view_first(v, f->a));
}

static void test_view_grows_past_its_initial_buffers(void **state)
{
	struct fixture *f = *state;
	struct kr_view *v = &f->v;
	char text[64];
	uint32_t trail[4] = {7, 0, 8, 0};
	for (int i = 0; i < 1000; i++) {
		snprintf(text, sizeof text, "value-%d-%s", i, i % 3 ? "x" : "a-longer-suffix-here");
		trail[1] = (uint32_t)i;
		assert_int_equal(kr_view_add(v, (uint32_t)i % 3, KR_V_STRING, text, strlen(text),
					     trail, 4),
				 KR_OK);
	}
	int i = 1;
	for (const struct kr_value *val = kr_view_first(v, 1); val; val = kr_view_next(v, val)) {
		snprintf(text, sizeof text, "value-%d-%s", i, "x");
		assert_string_equal(kr_view_text(v, val), text);
		assert_int_equal(val->trail_len, 4);
		assert_int_equal(v->trails[val->trail_off + 1], (uint32_t)i);
		i += 3;
	}
	assert_int_equal(i, 1000);
}

static void test_view_rejects_a_slot_outside_its_paths(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(kr_view_add(&f->v, f->p->nslots, KR_V_STRING, "x", 1, NULL, 0),
			 KR_ERR_LIMIT);
	assert_int_equal(f->v.nvals, 0);
}

static void test_view_bind_follows_a_grown_path_set(void **state)
{
	struct fixture *f = *state;
	add(&f->v, f->a, KR_V_STRING, "x");
	uint32_t e = add_path(f->p, "e");
	assert_int_equal(kr_view_add(&f->v, e, KR_V_STRING, "y", 1, NULL, 0), KR_ERR_LIMIT);
	assert_int_equal(kr_view_bind(&f->v, f->p), KR_OK);
	assert_null(kr_view_first(&f->v, f->a)); /* binding starts an empty event */
	add(&f->v, e, KR_V_STRING, "y");
	assert_string_equal(kr_view_text(&f->v, kr_view_first(&f->v, e)), "y");
}

/* ---- trails ---- */

static const struct kr_value *add_trail(struct kr_view *v, uint32_t slot, const uint32_t *trail,
					uint32_t n)
{
	assert_int_equal(kr_view_add(v, slot, KR_V_STRING, "v", 1, trail, n), KR_OK);
	const struct kr_value *val = kr_view_first(v, slot);
	while (kr_view_next(v, val))
		val = kr_view_next(v, val);
	return val;
}

static void test_consistent_is_false_for_different_elements_of_one_array(void **state)
{
	struct fixture *f = *state;
	const uint32_t t1[] = {0, 1}, t2[] = {0, 2};
	const struct kr_value *x = add_trail(&f->v, f->a, t1, 2);
	const struct kr_value *y = add_trail(&f->v, f->b, t2, 2);
	assert_false(kr_view_consistent(&f->v, x, y));
	assert_false(kr_view_consistent(&f->v, y, x));
}

static void test_consistent_is_true_for_the_same_element(void **state)
{
	struct fixture *f = *state;
	const uint32_t t1[] = {0, 1}, t2[] = {0, 1};
	const struct kr_value *x = add_trail(&f->v, f->a, t1, 2);
	const struct kr_value *y = add_trail(&f->v, f->b, t2, 2);
	assert_true(kr_view_consistent(&f->v, x, y));
	assert_true(kr_view_consistent(&f->v, x, x));
}

static void test_consistent_is_true_for_different_arrays(void **state)
{
	struct fixture *f = *state;
	const uint32_t t1[] = {0, 1}, t2[] = {3, 0};
	const struct kr_value *x = add_trail(&f->v, f->a, t1, 2);
	const struct kr_value *y = add_trail(&f->v, f->b, t2, 2);
	assert_true(kr_view_consistent(&f->v, x, y));
	/* same outer element, then different inner arrays */
	const uint32_t t3[] = {0, 1, 4, 0}, t4[] = {0, 1, 5, 7};
	x = add_trail(&f->v, f->a, t3, 4);
	y = add_trail(&f->v, f->b, t4, 4);
	assert_true(kr_view_consistent(&f->v, x, y));
}

static void test_consistent_with_prefix_trails_compares_the_common_part(void **state)
{
	struct fixture *f = *state;
	const uint32_t outer[] = {0, 1}, inner_same[] = {0, 1, 2, 5}, inner_other[] = {0, 2, 2, 5};
	const struct kr_value *o = add_trail(&f->v, f->a, outer, 2);
	const struct kr_value *s = add_trail(&f->v, f->b, inner_same, 4);
	const struct kr_value *d = add_trail(&f->v, f->c, inner_other, 4);
	assert_true(kr_view_consistent(&f->v, o, s));
	assert_true(kr_view_consistent(&f->v, s, o));
	assert_false(kr_view_consistent(&f->v, o, d));
	assert_false(kr_view_consistent(&f->v, d, o));
	/* a value outside every array is consistent with anything */
	const struct kr_value *top = add_trail(&f->v, f->a, NULL, 0);
	assert_true(kr_view_consistent(&f->v, top, d));
	assert_true(kr_view_consistent(&f->v, d, top));
}

static void test_consistent_stops_at_the_first_differing_element(void **state)
{
	struct fixture *f = *state;
	/* same array 0, different elements: inconsistent, whatever lies below */
	const uint32_t t1[] = {0, 1, 2, 0}, t2[] = {0, 3, 2, 0};
	const struct kr_value *x = add_trail(&f->v, f->a, t1, 4);
	const struct kr_value *y = add_trail(&f->v, f->b, t2, 4);
	assert_false(kr_view_consistent(&f->v, x, y));
	/* same element, then same inner array with different elements */
	const uint32_t t3[] = {0, 1, 2, 0}, t4[] = {0, 1, 2, 1};
	x = add_trail(&f->v, f->a, t3, 4);
	y = add_trail(&f->v, f->b, t4, 4);
	assert_false(kr_view_consistent(&f->v, x, y));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_equal_paths_share_a_slot_and_different_paths_do_not),
		cmocka_unit_test(test_segments_are_compared_by_length_not_nul),
		cmocka_unit_test(test_path_child_and_slot_walk_the_trie),
		cmocka_unit_test(test_many_children_stay_reachable_with_stable_slots),
		cmocka_unit_test(test_the_empty_key_is_a_path_segment_like_any_other),
		cmocka_unit_test_setup_teardown(test_view_keeps_values_per_slot_in_the_order_added,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_view_copies_text_so_the_caller_may_reuse_its_buffer,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_view_reset_empties_every_slot_and_can_be_refilled,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_view_grows_past_its_initial_buffers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_view_rejects_a_slot_outside_its_paths, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_view_bind_follows_a_grown_path_set, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_consistent_is_false_for_different_elements_of_one_array,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_consistent_is_true_for_the_same_element, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_consistent_is_true_for_different_arrays, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_consistent_with_prefix_trails_compares_the_common_part,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_consistent_stops_at_the_first_differing_element,
						setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
