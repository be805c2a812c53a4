/* The kmsrouter commands. Each takes the arguments after its name and returns the process exit
 * status: 0 ok / matched, 1 no match / some invalid records, 2 usage or configuration error. */
#ifndef KR_COMMANDS_H
#define KR_COMMANDS_H

#include <stdbool.h>
#include <stdint.h>

#define KR_EXIT_OK 0
#define KR_EXIT_NOMATCH 1
#define KR_EXIT_USAGE 2

/* Parses "-c CONFIG" / "--config CONFIG" and "--help" (printing help) for commands that take
 * nothing else as options; leaves optind at the first operand. Returns -1 to go on, or the exit
 * status to return. */
int kr_cli_config_option(int argc, char **argv, const char *help, const char **config);

/* A positive decimal number (digits only, no sign, no spaces) into *out. */
bool kr_cli_positive(const char *s, uint64_t *out);

int kr_cmd_test_pattern(int argc, char **argv);
int kr_cmd_match(int argc, char **argv);
int kr_cmd_check(int argc, char **argv);
int kr_cmd_run(int argc, char **argv);
int kr_cmd_replay(int argc, char **argv);
int kr_cmd_help(int argc, char **argv);


#endif
