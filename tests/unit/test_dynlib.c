/* Unit tests for router/dynlib.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dynlib.h"

static struct zlib_api {
	const char *(*version)(void);
	unsigned long (*crc)(unsigned long, const unsigned char *, unsigned);
} Z;

static const struct kr_dynsym zsyms[] = {
	{"zlibVersion", offsetof(struct zlib_api, version)},
	{"crc32", offsetof(struct zlib_api, crc)},
};

static int inits;

static enum kr_err count_init(char *err)
{
	(void)err;
	inits++;
	return KR_OK;
}

static void test_symbols_of_a_library_are_resolved_once(void **state)
{
	(void)state;
	char err[KR_ERRBUF] = "";
	static struct kr_dynlib z = {
		.soname = "libz.so.1", .syms = zsyms, .nsyms = 2, .table = &Z, .init = count_init};
	assert_int_equal(kr_dynlib_load(&z, err), KR_OK);
	assert_non_null(Z.version);
	assert_true(strlen(Z.version()) > 0);
	/* the function is the library's own: CRC-32 of "123456789" is 0xcbf43926 */
	assert_int_equal(Z.crc(0, (const unsigned char *)"123456789", 9), 0xcbf43926ul);
	/* loading again gives the same outcome without loading (or initialising) again */
	assert_int_equal(kr_dynlib_load(&z, err), KR_OK);
	assert_int_equal(inits, 1);
}

static void test_a_missing_library_is_unavailable_and_named(void **state)
{
	(void)state;
	char err[KR_ERRBUF] = "";
	static void *table[2];
	static const struct kr_dynsym syms[] = {{"f", 0}};
	static struct kr_dynlib lib = {
		.soname = "libkmsrouter-no-such-library.so.9", .syms = syms, .nsyms = 1, .table = table};
	assert_int_equal(kr_dynlib_load(&lib, err), KR_ERR_UNAVAILABLE);
	assert_non_null(strstr(err, "libkmsrouter-no-such-library.so.9"));
	assert_null(table[0]);
	/* the same answer again */
	err[0] = 0;
	assert_int_equal(kr_dynlib_load(&lib, err), KR_ERR_UNAVAILABLE);
	assert_non_null(strstr(err, "libkmsrouter-no-such-library.so.9"));
}

static void test_a_missing_symbol_is_unavailable_and_named(void **state)
{
	(void)state;
	char err[KR_ERRBUF] = "";
	static void *table[2];
	static const struct kr_dynsym syms[] = {{"zlibVersion", 0},
						{"kr_no_such_symbol", sizeof(void *)}};
	static struct kr_dynlib lib = {.soname = "libz.so.1", .syms = syms, .nsyms = 2, .table = table};
	assert_int_equal(kr_dynlib_load(&lib, err), KR_ERR_UNAVAILABLE);
	assert_non_null(strstr(err, "kr_no_such_symbol"));
	assert_non_null(strstr(err, "libz.so.1"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_symbols_of_a_library_are_resolved_once),
		cmocka_unit_test(test_a_missing_library_is_unavailable_and_named),
		cmocka_unit_test(test_a_missing_symbol_is_unavailable_and_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
