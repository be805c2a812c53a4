/* kmsrouter help config [TYPE]: the configuration reference, printed from the same option
 * tables that config loading fills and checks with, so it cannot drift from what is accepted. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "options.h"
#include "plugin.h"

static const char help[] =
	"usage: kmsrouter help config [TYPE]\n\n"
	"Prints the configuration reference: every top-level, rule, target, source and sink\n"
	"option with its type, default and help. With TYPE (a source or sink type such as\n"
	"\"http\"), only that plugin's options.\n";

static void section(const char *title, const struct kr_option *table)
{
	printf("%s\n", title);
	kr_opts_print(stdout, table, 2);
	printf("\n");
}

static void plugin(const char *what, const char *type, const char *description,
		   const struct kr_option *options)
{
	printf("%s type \"%s\": %s\n", what, type, description);
	if (options && options->name)
		kr_opts_print(stdout, options, 2);
	else
		printf("  (no options of its own)\n");
	printf("\n");
}

/* The sinks and sources of type (all when NULL); returns how many were printed. */
static int plugins(const char *type)
{
	int n = 0;
	for (const struct kr_source_entry *e = kr_source_registry; e->type; e++)
		if (!type || strcmp(type, e->type) == 0) {
			n++;
			if (e->plugin)
				plugin("source", e->type, e->plugin->description, e->plugin->options);
			else
				printf("source type \"%s\": not available in this build\n\n", e->type);
		}
	for (const struct kr_sink_entry *e = kr_sink_registry; e->type; e++)
		if (!type || strcmp(type, e->type) == 0) {
			n++;
			if (e->plugin)
				plugin("sink", e->type, e->plugin->description, e->plugin->options);
			else
				printf("sink type \"%s\": not available in this build\n\n", e->type);
		}
	return n;
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
	section("top level", kr_config_options);
	section("rules: each entry of \"rules\"", kr_rule_options);
	section("targets: each entry of a rule's \"targets\" is a sink name, or an object", kr_target_options);
	section("every source", kr_source_common_options);
	section("every sink", kr_sink_common_options);
	plugins(NULL);
	return KR_EXIT_OK;
}
