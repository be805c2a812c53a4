/* Optional shared libraries, loaded when first needed.
 *
 * libcurl (the AWS and HTTP sinks) and libmicrohttpd (the metrics endpoints) bring some thirty
 * libraries with them (TLS, Kerberos, LDAP, ...): linked in, every kmsrouter process paid about
 * 6 ms to map and relocate them before main, `test-pattern` in a script and `match` alike. Loaded
 * with dlopen when a pipeline first needs them, only `run` with such a sink or a metrics listener
 * pays, once. libcrypto (SigV4 signatures, sigv4.h) is loaded the same way; libcurl maps it
 * already. The headers are still the packages' own (meson's partial dependencies). */
#ifndef KR_DYNLIB_H
#define KR_DYNLIB_H

#include <stddef.h>

#include "err.h"

struct kr_dynsym {
	const char *name; /* the symbol */
	size_t offset;    /* where its address goes in the table of function pointers */
};

/* A library: fill in the first five fields statically, the rest is kr_dynlib_load's. */
struct kr_dynlib {
	const char *soname;
	const struct kr_dynsym *syms;
	size_t nsyms;
	void *table;                  /* the caller's struct of function pointers */
	enum kr_err (*init)(char *err); /* optional, once after the symbols are resolved */
	int tried;
	enum kr_err outcome;
	char msg[KR_ERRBUF];
};

/* Loads lib on the first call (dlopen for the rest of the process, every symbol into table);
 * later calls give the first outcome again. Thread safe. KR_ERR_UNAVAILABLE, with err naming the
 * library or the symbol, when it cannot be loaded. */
enum kr_err kr_dynlib_load(struct kr_dynlib *lib, char *err);

#endif
