/* The one table of plugins. Adding a sink is one file in sinks/, one line here, and its tests.
 * Types that later work brings are listed with a NULL plugin, so configs naming them are
 * recognised and reported as not available in this build rather than as typos. */
#include <string.h>

#include "plugin.h"

extern const struct kr_sink_plugin kr_sink_log;
extern const struct kr_sink_plugin kr_sink_http;
extern const struct kr_sink_plugin kr_sink_sqs;
extern const struct kr_sink_plugin kr_sink_sns;
extern const struct kr_sink_plugin kr_sink_lambda;
extern const struct kr_sink_plugin kr_sink_kinesis;
extern const struct kr_sink_plugin kr_sink_cloudwatch_logs;
extern const struct kr_sink_plugin kr_sink_kafka;
extern const struct kr_source_plugin kr_source_file;
extern const struct kr_source_plugin kr_source_sqs;
extern const struct kr_source_plugin kr_source_kafka;

const struct kr_sink_entry kr_sink_registry[] = {
	{"log", &kr_sink_log},
	{"lambda", &kr_sink_lambda},
	{"sns", &kr_sink_sns},
	{"cloudwatch-logs", &kr_sink_cloudwatch_logs},
	{"sqs", &kr_sink_sqs},
	{"kinesis", &kr_sink_kinesis},
	{"kafka", &kr_sink_kafka},
	{"http", &kr_sink_http},
	{NULL, NULL},
};

const struct kr_source_entry kr_source_registry[] = {
	{"file", &kr_source_file},
	{"sqs", &kr_source_sqs},
	{"kafka", &kr_source_kafka},
	{NULL, NULL},
};

const struct kr_sink_entry *kr_sink_lookup(const char *type)
{
	for (const struct kr_sink_entry *e = kr_sink_registry; e->type; e++)
		if (strcmp(e->type, type) == 0)
			return e;
	return NULL;
}

const struct kr_source_plugin *kr_replay_source(void)
{
	return &kr_source_file;
}

const struct kr_source_entry *kr_source_lookup(const char *type)
{
	for (const struct kr_source_entry *e = kr_source_registry; e->type; e++)
		if (strcmp(e->type, type) == 0)
			return e;
	return NULL;
}
