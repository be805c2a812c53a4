/* Option parsing shared by the commands that take only a configuration (see commands.h). */
#include <getopt.h>
#include <stdio.h>

#include "commands.h"

int kr_cli_config_option(int argc, char **argv, const char *help, const char **config)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		if (opt == 'c') {
			*config = optarg;
		} else if (opt == 'h') {
			fputs(help, stdout);
			return KR_EXIT_OK;
		} else {
			fputs(help, stderr);
			return KR_EXIT_USAGE;
		}
	}
	return -1;
}
