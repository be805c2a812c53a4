/* kmsrouter help config [TYPE]: the configuration reference, printed from the same option
 * tables that config loading fills and checks with, so it cannot drift from what is accepted,
 * each section followed by its reference text (how the plugin behaves, what the options mean
 * together): paragraphs filled to DOC_WIDTH columns. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "aws.h"
#include "commands.h"
#include "config.h"
#include "options.h"
#include "plugin.h"

#define DOC_WIDTH 80

static const char help[] =
	"usage: kmsrouter help config [TYPE]\n\n"
	"Prints the configuration reference: every top-level, rule, target, source and sink\n"
	"option with its type, default and help, each section followed by how it behaves\n"
	"(delivery, batching, ordering, failures, the IAM permissions of AWS plugins). With\n"
	"TYPE (a source or sink type such as \"http\"), only that plugin's options and how it\n"
	"behaves.\n";

static void section(const char *title, const struct kr_option *table, const char *doc)
{
	printf("%s\n", title);
	kr_opts_print(stdout, table, 2);
	kr_opts_print_doc(stdout, doc, 2, DOC_WIDTH);
	printf("\n");
}

/* A source or sink type of the registry. */
struct entry {
	const char *what; /* "source" or "sink" */
	const char *type;
	const char *description, *doc;
	const struct kr_option *options;
	bool available;   /* in this build */
	bool aws;         /* its options are the AWS ones and more */
};

#define ENTRY(what_, e)                                                                          \
	((struct entry){.what = what_, .type = (e)->type,                                         \
			.description = (e)->plugin ? (e)->plugin->description : NULL,            \
			.doc = (e)->plugin ? (e)->plugin->doc : NULL,                             \
			.options = (e)->plugin ? (e)->plugin->options : NULL,                     \
			.available = (e)->plugin != NULL,                                         \
			.aws = (e)->plugin && kr_aws_options_in((e)->plugin->options)})

/* The registry's sources, then its sinks, of type (all when NULL), into out; how many. */
static size_t entries(const char *type, struct entry *out, size_t cap)
{
	size_t n = 0;
	for (const struct kr_source_entry *e = kr_source_registry; e->type && n < cap; e++)
		if (!type || strcmp(type, e->type) == 0)
			out[n++] = ENTRY("source", e);
	for (const struct kr_sink_entry *e = kr_sink_registry; e->type && n < cap; e++)
		if (!type || strcmp(type, e->type) == 0)
			out[n++] = ENTRY("sink", e);
	return n;
}

/* aws_text: also print the AWS options' text (help config TYPE, after the last AWS plugin). */
static void plugin(const struct entry *e, bool aws_text)
{
	if (!e->available) {
		printf("%s type \"%s\": not available in this build\n\n", e->what, e->type);
		return;
	}
	printf("%s type \"%s\": %s\n", e->what, e->type, e->description);
	if (e->options && e->options->name)
		kr_opts_print(stdout, e->options, 2);
	else
		printf("  (no options of its own)\n");
	kr_opts_print_doc(stdout, e->doc, 2, DOC_WIDTH);
	if (aws_text)
		kr_opts_print_doc(stdout, kr_aws_doc, 2, DOC_WIDTH);
	printf("\n");
}

/* The sinks and sources of type (all when NULL); returns how many were printed. With a type,
 * the last of them that calls AWS is followed by the text of the AWS options, which the full
 * reference prints once, in a section of its own. */
static size_t plugins(const char *type)
{
	struct entry list[64];
	size_t n = entries(type, list, sizeof list / sizeof list[0]), last_aws = n;
	for (size_t i = 0; type && i < n; i++)
		if (list[i].aws)
			last_aws = i;
	for (size_t i = 0; i < n; i++)
		plugin(&list[i], i == last_aws);
	return n;
}

/* The section of the AWS options, titled with the plugins that have them. */
static void aws_section(void)
{
	struct entry list[64];
	size_t n = entries(NULL, list, sizeof list / sizeof list[0]), used;
	char title[512];
	used = (size_t)snprintf(title, sizeof title, "every AWS source and sink (");
	const char *sep = "";
	for (size_t i = 0; i < n; i++)
		if (list[i].aws && used < sizeof title) {
			used += (size_t)snprintf(title + used, sizeof title - used, "%s%s %s", sep,
						 list[i].what, list[i].type);
			sep = ", ";
		}
	if (used < sizeof title)
		snprintf(title + used, sizeof title - used, ")");
	section(title, kr_aws_options, kr_aws_doc);
}

int kr_cmd_help(int argc, char **argv)
{
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(help, stdout);
		return KR_EXIT_OK;
	}
	if (argc < 2 || argc > 3 || strcmp(argv[1], "config") != 0) {
		fputs(help, stderr);
		return KR_EXIT_USAGE;
	}
	if (argc == 3) {
		if (plugins(argv[2]) == 0) {
			fprintf(stderr, "kmsrouter help config: no source or sink type \"%s\"\n",
				argv[2]);
			return KR_EXIT_USAGE;
		}
		return KR_EXIT_OK;
	}
	printf("kmsrouter configuration: JSON, comments allowed. Errors name FILE:LINE:COL and the\n"
	       "JSON path; unknown keys are errors. Relative paths resolve against the config\n"
	       "file's folder. Durations take milliseconds or \"10s\"; sizes bytes or \"64KiB\".\n\n");
	section("top level", kr_config_options, kr_config_doc);
	section("rules: each entry of \"rules\"", kr_rule_options, kr_rule_doc);
	section("targets: each entry of a rule's \"targets\" is a sink name, or an object", kr_target_options,
		kr_target_doc);
	section("every source", kr_source_common_options, kr_source_common_doc);
	section("every sink", kr_sink_common_options, kr_sink_common_doc);
	aws_section();
	plugins(NULL);
	return KR_EXIT_OK;
}
