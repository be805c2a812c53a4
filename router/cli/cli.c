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

bool kr_cli_positive(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return v > 0;
}
