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

/* Whether a plugin calls AWS: its table has every option of kr_aws_options. */
static bool calls_aws(const struct kr_option *options)
{
	for (const struct kr_option *a = kr_aws_options; a->name; a++) {
		const struct kr_option *o = options;
		while (o && o->name && strcmp(o->name, a->name) != 0)
			o++;
		if (!o || !o->name)
			return false;
	}
	return true;
}

/* aws_text: also print the AWS options' text (help config TYPE, after the last AWS plugin). */
static void plugin(const char *what, const char *type, const char *description, const char *doc,
		   const struct kr_option *options, bool aws_text)
{
	printf("%s type \"%s\": %s\n", what, type, description);
	if (options && options->name)
		kr_opts_print(stdout, options, 2);
	else
		printf("  (no options of its own)\n");
	kr_opts_print_doc(stdout, doc, 2, DOC_WIDTH);
	if (aws_text)
		kr_opts_print_doc(stdout, kr_aws_doc, 2, DOC_WIDTH);
	printf("\n");
}

/* The sinks and sources of type (all when NULL); returns how many were printed. With a type,
 * the last of them that calls AWS is followed by the text of the AWS options, which the full
 * reference prints once, in a section of its own. */
static int plugins(const char *type)
{
	int n = 0, aws = 0, aws_left = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (const struct kr_source_entry *e = kr_source_registry; e->type; e++) {
			if (type && strcmp(type, e->type) != 0)
				continue;
			bool a = type && e->plugin && calls_aws(e->plugin->options);
			if (!pass) {
				aws += a;
				continue;
			}
			n++;
			aws_left -= a;
			if (e->plugin)
				plugin("source", e->type, e->plugin->description, e->plugin->doc,
				       e->plugin->options, a && !aws_left);
			else
				printf("source type \"%s\": not available in this build\n\n", e->type);
		}
		for (const struct kr_sink_entry *e = kr_sink_registry; e->type; e++) {
			if (type && strcmp(type, e->type) != 0)
				continue;
			bool a = type && e->plugin && calls_aws(e->plugin->options);
			if (!pass) {
				aws += a;
				continue;
			}
			n++;
			aws_left -= a;
			if (e->plugin)
				plugin("sink", e->type, e->plugin->description, e->plugin->doc,
				       e->plugin->options, a && !aws_left);
			else
				printf("sink type \"%s\": not available in this build\n\n", e->type);
		}
		aws_left = aws;
	}
	return n;
}

/* Appends text to title (n bytes used of cap), as far as it fits. */
static size_t append(char *title, size_t n, size_t cap, const char *sep, const char *kind,
		     const char *type)
{
	if (n < cap)
		n += (size_t)snprintf(title + n, cap - n, "%s%s %s", sep, kind, type);
	return n < cap ? n : cap;
}

/* The section of the AWS options, titled with the plugins that have them. */
static void aws_section(void)
{
	char title[512];
	size_t n = (size_t)snprintf(title, sizeof title, "every AWS source and sink (");
	const char *sep = "";
	for (const struct kr_source_entry *e = kr_source_registry; e->type; e++)
		if (e->plugin && calls_aws(e->plugin->options)) {
			n = append(title, n, sizeof title, sep, "source", e->type);
			sep = ", ";
		}
	for (const struct kr_sink_entry *e = kr_sink_registry; e->type; e++)
		if (e->plugin && calls_aws(e->plugin->options)) {
			n = append(title, n, sizeof title, sep, "sink", e->type);
			sep = ", ";
		}
	if (n < sizeof title)
		snprintf(title + n, sizeof title - n, ")");
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
