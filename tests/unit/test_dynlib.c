/* Unit tests for router/dynlib.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dynlib.h"

static struct {
	const char *(*version)(void);
	unsigned long (*crc)(unsigned long, const unsigned char *, unsigned);
} Z;

static const struct kr_dynsym zsyms[] = {
	{"zlibVersion", offsetof(__typeof__(Z), version)},
	{"crc32", offsetof(__typeof__(Z), crc)},
};

static void test_symbols_of_a_library_are_resolved(void **state)
{
	(void)state;
	char err[KR_ERRBUF] = "";
	assert_int_equal(kr_dynlib_load("libz.so.1", zsyms, 2, &Z, err), KR_OK);
	assert_non_null(Z.version);
	assert_true(strlen(Z.version()) > 0);
	/* the function is the library's own: CRC-32 of "123456789" is 0xcbf43926 */
	assert_int_equal(Z.crc(0, (const unsigned char *)"123456789", 9), 0xcbf43926ul);
	/* loading again is harmless */
	assert_int_equal(kr_dynlib_load("libz.so.1", zsyms, 2, &Z, err), KR_OK);
}

static void test_a_missing_library_is_unavailable_and_named(void **state)
{
	(void)state;
	char err[KR_ERRBUF] = "";
	void *table[2] = {NULL, NULL};
	static const struct kr_dynsym syms[] = {{"f", 0}};
	assert_int_equal(kr_dynlib_load("libkmsrouter-no-such-library.so.9", syms, 1, table, err),
			 KR_ERR_UNAVAILABLE);
	assert_non_null(strstr(err, "libkmsrouter-no-such-library.so.9"));
	assert_null(table[0]);
}

static void test_a_missing_symbol_is_unavailable_and_named(void **state)
{
	(void)state;
	char err[KR_ERRBUF] = "";
	void *table[2] = {NULL, NULL};
	static const struct kr_dynsym syms[] = {{"zlibVersion", 0},
						{"kr_no_such_symbol", sizeof(void *)}};
	assert_int_equal(kr_dynlib_load("libz.so.1", syms, 2, table, err), KR_ERR_UNAVAILABLE);
	assert_non_null(strstr(err, "kr_no_such_symbol"));
	assert_non_null(strstr(err, "libz.so.1"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_symbols_of_a_library_are_resolved),
		cmocka_unit_test(test_a_missing_library_is_unavailable_and_named),
		cmocka_unit_test(test_a_missing_symbol_is_unavailable_and_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
