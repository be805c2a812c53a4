/* The kmsrouter commands. Each takes the arguments after its name and returns the process exit
 * status: 0 ok / matched, 1 no match / some invalid records, 2 usage or configuration error. */
#ifndef KR_COMMANDS_H
#define KR_COMMANDS_H

#define KR_EXIT_OK 0
#define KR_EXIT_NOMATCH 1
#define KR_EXIT_USAGE 2

int kr_cmd_test_pattern(int argc, char **argv);
int kr_cmd_match(int argc, char **argv);
int kr_cmd_check(int argc, char **argv);
int kr_cmd_run(int argc, char **argv);
int kr_cmd_replay(int argc, char **argv);


#endif
