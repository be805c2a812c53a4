/* kmsrouter check: validate a configuration and print what it holds. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "config.h"

static const char help[] =
	"usage: kmsrouter check -c CONFIG\n\n"
	"Validates the configuration (JSON with comments; errors as FILE:LINE:COL: $.path: message)\n"
	"as run loads it, every option of every plugin checked, and prints a summary: each rule\n"
	"with the sinks of its target entries (and how many identical entries were merged into\n"
	"one delivery), each sink and source with its type. Source and sink types that this build\n"
	"recognises but does not include are reported as errors.\n\n"
	"Exit status: 0 valid, 2 invalid or unusable.\n";

int kr_cmd_check(int argc, char **argv)
{
	const char *config = NULL;
	int status = kr_cli_config_option(argc, argv, help, &config);
	if (status >= 0)
		return status;
	if (!config || optind != argc) {
		fputs(help, stderr);
		return KR_EXIT_USAGE;
	}
	char err[KR_ERRBUF];
	struct kr_config *c;
	if (kr_config_load(config, &c, err) != KR_OK) {
		fprintf(stderr, "kmsrouter: %s\n", err);
		return KR_EXIT_USAGE;
	}
	printf("%s: %zu rule%s, %zu sink%s, %zu source%s, %u field path%s indexed\n", config,
	       c->nrules, c->nrules == 1 ? "" : "s", c->nsinks, c->nsinks == 1 ? "" : "s",
	       c->nsources, c->nsources == 1 ? "" : "s", kr_rules_paths(c->compiled)->nslots,
	       kr_rules_paths(c->compiled)->nslots == 1 ? "" : "s");
	for (size_t i = 0; i < c->nrules; i++) {
		const struct kr_rule_cfg *r = &c->rules[i];
		printf("rule %s ->", r->name);
		for (size_t t = 0; t < r->ntargets; t++)
			printf(" %s%s", c->sinks[r->targets[t]].name,
			       r->tcfg[t].input_transformer ? " (input_transformer)"
			       : r->tcfg[t].input_path	    ? " (input_path)"
							    : "");
		if (r->nmerged)
			printf(" [%zu identical target entr%s merged: delivered once]", r->nmerged,
			       r->nmerged == 1 ? "y" : "ies");
		printf("\n");
	}
	for (size_t i = 0; i < c->nsinks; i++)
		printf("sink %s (%s)%s\n", c->sinks[i].name, c->sinks[i].type,
		       c->sinks[i].plugin ? "" : " not available in this build");
	for (size_t i = 0; i < c->nsources; i++)
		printf("source %s (%s)%s\n", c->sources[i].name, c->sources[i].type,
		       c->sources[i].plugin ? "" : " not available in this build");
	status = KR_EXIT_OK;
	if (kr_config_unavailable(c, err)) {
		fprintf(stderr, "kmsrouter: %s: %s\n", config, err);
		status = KR_EXIT_USAGE;
	}
	kr_config_free(c);
	return status;
}
