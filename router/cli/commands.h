/* The kmsrouter commands. Each takes the arguments after its name and returns the process exit
 * status: 0 ok / matched, 1 no match / some invalid records, 2 usage or configuration error. */
#ifndef KR_COMMANDS_H
#define KR_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
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
int kr_cmd_test(int argc, char **argv);

/* What kmsrouter test compares and shows payloads with (cmd_test.c; pure functions). */
struct kr_buf;
struct kr_json;
/* Appends a unified-style diff of the lines of a (alen bytes, the expected: "-") and b (the
 * actual: "+"): "@@ -LINE,COUNT +LINE,COUNT @@" hunks with up to context unchanged lines (" ")
 * around each run of changes, every line prefixed with indent; in a run of changes the removed
 * lines come before the added ones. Lines are split at each newline (n newlines make n + 1
 * lines). Nothing when the texts are equal. False when out of memory. */
bool kr_line_diff(struct kr_buf *out, const char *indent, const char *a, size_t alen,
		  const char *b, size_t blen, unsigned context);


#endif
