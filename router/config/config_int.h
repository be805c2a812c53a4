/* What config.c and config_rules.c share: the loader's state (struct vctx) and the helpers both
 * use to read and report (cfg_ prefix). Not for anything outside configuration loading. */
#ifndef KR_CONFIG_INT_H
#define KR_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "names.h"

/* A rule taken while the file was parsed (cfg_stream_rule): its name and its targets' names, in
 * pool; the targets are looked up once the sinks are loaded (cfg_load_streamed_rules). */
struct srule {
	const char *name;
	uint32_t tfirst, nt; /* in vctx.tnames */
};

struct vctx {
	struct kr_config *c;
	char *err;
	struct kr_opts_src src; /* for kr_opts_fill: the file, its text, where errors go */
	bool sinks_loaded;      /* sink names can be looked up (before: dead_letter waits) */
	const char *rule_keys[4]; /* of kr_rule_options: name, pattern, targets, description */
	struct kr_names names; /* of the list being loaded (rules, sinks, sources): duplicate
				  checks stay linear */
	/* rules streamed from the parse (see cfg_stream_rule) */
	bool stream_off; /* a rule needs the tree: load the file again, the usual way */
	struct kr_names rnames;
	struct srule *sr;
	size_t nsr, capsr;
	const char **tnames;
	size_t ntn, captn;
};

/* config.c */
/* Adds name to a set of names: 1 added, 0 already there, -1 out of memory. */
int cfg_nameset_add(struct kr_names *ns, const char *name);
void cfg_jp_index(char *out, size_t cap, const char *base, size_t idx, const char *suffix);
enum kr_err cfg_verr(struct vctx *v, const struct kr_json *node, const char *jpath,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
enum kr_err cfg_unknown_key(struct vctx *v, const struct kr_json *obj, size_t i,
			    const char *jpath, const char *const *allowed, size_t nallowed,
			    const char *what);
enum kr_err cfg_check_keys(struct vctx *v, const struct kr_json *obj, const char *jpath,
			   const char *const *allowed, size_t nallowed, const char *what);
size_t cfg_get_keys(const struct kr_json *obj, const char *const *allowed, size_t nallowed,
		    const struct kr_json **vals);
int32_t cfg_find_sink(const struct kr_config *c, const char *name);
enum kr_err cfg_sink_ref(struct vctx *v, const struct kr_json *j, const char *jpath,
			 int32_t *out);
enum kr_err cfg_check_retry(struct vctx *v, const struct kr_json *o, const char *jp,
			    const struct kr_retry_cfg *r);
extern const struct kr_option cfg_retry_options[];

/* config_rules.c: rules, their patterns and targets */
bool cfg_stream_rule(void *ctx, const struct kr_json *o, size_t index);
enum kr_err cfg_load_streamed_rules(struct vctx *v);
enum kr_err cfg_load_rules(struct vctx *v, const struct kr_json *arr);

#endif
