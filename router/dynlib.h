/* Optional shared libraries, loaded when first needed.
 *
 * libcurl (the AWS and HTTP sinks) and libmicrohttpd (the metrics endpoints) bring some thirty
 * libraries with them (TLS, Kerberos, LDAP, ...): linked in, every kmsrouter process paid about
 * 6 ms to map and relocate them before main, `test-pattern` in a script and `match` alike. Loaded
 * with dlopen when a pipeline first needs them, only `run` with such a sink or a metrics listener
 * pays, once. The headers are still the packages' own (meson's partial dependencies). */
#ifndef KR_DYNLIB_H
#define KR_DYNLIB_H

#include <stddef.h>

#include "err.h"

struct kr_dynsym {
	const char *name; /* the symbol */
	size_t offset;    /* where its address goes in the caller's table of function pointers */
};

/* Opens soname (for the rest of the process) and writes the address of each of the n symbols
 * into table + offset. Thread safe; callers load a library once and keep the table. */
enum kr_err kr_dynlib_load(const char *soname, const struct kr_dynsym *syms, size_t n,
			   void *table, char *err);

#endif
