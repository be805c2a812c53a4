/* See dynlib.h. */
#include "dynlib.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

enum kr_err kr_dynlib_load(const char *soname, const struct kr_dynsym *syms, size_t n,
			   void *table, char *err)
{
	pthread_mutex_lock(&lock);
	/* dlopen of a library already open only counts a reference: cheap, and the same handle */
	void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
	enum kr_err e = KR_OK;
	if (!h) {
		const char *why = dlerror();
		e = kr_errf(err, KR_ERR_UNAVAILABLE, "cannot load %s: %s", soname,
			    why ? why : "unknown error");
	}
	for (size_t i = 0; !e && i < n; i++) {
		void *p = dlsym(h, syms[i].name);
		if (!p)
			e = kr_errf(err, KR_ERR_UNAVAILABLE, "%s has no %s", soname, syms[i].name);
		else
			memcpy((char *)table + syms[i].offset, &p, sizeof p);
	}
	pthread_mutex_unlock(&lock);
	return e;
}
