/* kmsrouter: command dispatch, --help and --version. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "kr_config.h"
#include "mem.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *summary;
} commands[] = {
	{"run", kr_cmd_run, "route events from the configured sources to the sinks (the daemon)"},
	{"replay", kr_cmd_replay, "replay archived events through the rules and sinks"},
	{"match", kr_cmd_match, "classify events from files or stdin and print the matching rules"},
	{"test-pattern", kr_cmd_test_pattern, "test an EventBridge pattern against an event, offline"},
	{"check", kr_cmd_check, "validate a configuration and print a summary"},
	{"test", kr_cmd_test, "run rule tests: events and the rules, sinks and payloads they must hit"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: kmsrouter COMMAND [OPTIONS] [ARGS]\n\n"
		   "Routes AWS KMS events from EventBridge, SNS, CloudTrail and archives with\n"
		   "EventBridge event patterns.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n  kmsrouter COMMAND --help     describes a command\n"
		   "  kmsrouter help config [TYPE] the configuration reference\n"
		   "  kmsrouter --version\n");
}

int main(int argc, char **argv)
{
	kr_mem_init();
	if (argc < 2) {
		usage(stderr);
		return KR_EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("kmsrouter %s\n", KR_VERSION);
		return KR_EXIT_OK;
	}
	if (strcmp(cmd, "help") == 0 && argc > 2)
		return kr_cmd_help(argc - 1, argv + 1);
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return KR_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (strcmp(cmd, commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "kmsrouter: unknown command \"%s\"\n\n", cmd);
	usage(stderr);
	return KR_EXIT_USAGE;
}
