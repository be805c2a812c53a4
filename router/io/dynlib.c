/* See dynlib.h. */
#include "dynlib.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static enum kr_err open_lib(struct kr_dynlib *lib)
{
	void *h = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *why = dlerror();
		return kr_errf(lib->msg, KR_ERR_UNAVAILABLE, "cannot load %s: %s", lib->soname,
			       why ? why : "unknown error");
	}
	for (size_t i = 0; i < lib->nsyms; i++) {
		void *p = dlsym(h, lib->syms[i].name);
		if (!p)
			return kr_errf(lib->msg, KR_ERR_UNAVAILABLE, "%s has no %s", lib->soname,
				       lib->syms[i].name);
		memcpy((char *)lib->table + lib->syms[i].offset, &p, sizeof p);
	}
	return lib->init ? lib->init(lib->msg) : KR_OK;
}

enum kr_err kr_dynlib_load(struct kr_dynlib *lib, char *err)
{
	pthread_mutex_lock(&lock);
	if (!lib->tried) {
		lib->outcome = open_lib(lib);
		lib->tried = 1;
	}
	enum kr_err e = lib->outcome;
	pthread_mutex_unlock(&lock);
	return e ? kr_errf(err, e, "%s", lib->msg) : KR_OK;
}
