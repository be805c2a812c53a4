/* log sink: JSON Lines to a file or standard output.
 *
 * This build declares the sink and its options for configuration checking and the offline
 * commands; delivery arrives with the pipeline. */
#include "plugin.h"

static const struct kr_option log_options[] = {
	{.name = "path", .type = KR_OPT_STRING, .def = "\"-\"",
	 .help = "file to append JSON Lines to, or \"-\" for standard output"},
	{0},
};

const struct kr_sink_plugin kr_sink_log = {
	.name = "log",
	.description = "writes each delivered event as one JSON line to a file or stdout",
	.options = log_options,
};
