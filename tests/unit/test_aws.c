/* Unit tests for router/io/aws.h: error mapping of JSON, query and XML error responses
 * (retryable or permanent), region and endpoint resolution from options and the environment,
 * the credential chain (options, environment, shared files with profiles, credential_process),
 * and a signed call against a loopback server of this test: the headers sent, the secret blotted
 * out of an error message the server echoes. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "aws.h"
#include "err.h"
#include "loop.h"

/* ---- error mapping ---- */

static void map(long status, const char *headers, const char *body, struct kr_aws_result *out)
{
	struct kr_http_response r = {.status = status,
				     .headers = headers ? headers : "",
				     .body = body,
				     .body_len = strlen(body),
				     .retry_after_ms = -1};
	kr_aws_error_of(&r, out);
}

static void test_error_json(void **state)
{
	(void)state;
	struct kr_aws_result r;
	map(400, NULL,
	    "{\"__type\":\"com.amazonaws.sqs#QueueDoesNotExist\",\"message\":\"The specified "
	    "queue does not exist.\"}",
	    &r);
	assert_false(r.ok);
	assert_string_equal(r.code, "QueueDoesNotExist");
	assert_string_equal(r.message, "The specified queue does not exist.");
	assert_int_equal(r.outcome, KR_PERMANENT);

	map(400, NULL, "{\"__type\":\"ThrottlingException\",\"Message\":\"Rate exceeded\"}", &r);
	assert_string_equal(r.code, "ThrottlingException");
	assert_string_equal(r.message, "Rate exceeded");
	assert_int_equal(r.outcome, KR_RETRYABLE);

	map(400, NULL,
	    "{\"__type\":\"ProvisionedThroughputExceededException\",\"message\":\"slow down\"}", &r);
	assert_int_equal(r.outcome, KR_RETRYABLE);

	/* the query protocol's code in a header wins over the JSON type */
	map(400, "x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender\r\n",
	    "{\"__type\":\"com.amazonaws.sqs#QueueDoesNotExist\",\"message\":\"gone\"}", &r);
	assert_string_equal(r.code, "AWS.SimpleQueueService.NonExistentQueue");
	assert_int_equal(r.outcome, KR_PERMANENT);

	/* Lambda's REST errors: the type in x-amzn-ErrorType */
	map(404, "x-amzn-ErrorType: ResourceNotFoundException:http://internal.amazon.com/\r\n",
	    "{\"Message\":\"Function not found: arn:aws:lambda:us-east-1:1:function:f\"}", &r);
	assert_string_equal(r.code, "ResourceNotFoundException");
	assert_int_equal(r.outcome, KR_PERMANENT);

	map(429, "x-amzn-ErrorType: TooManyRequestsException\r\n", "{\"message\":\"Rate\"}", &r);
	assert_int_equal(r.outcome, KR_RETRYABLE);

	map(413, NULL, "{\"message\":\"Request must be smaller than 262144 bytes\"}", &r);
	assert_string_equal(r.code, "HTTP413");
	assert_int_equal(r.outcome, KR_PERMANENT);
}

static void test_error_xml(void **state)
{
	(void)state;
	struct kr_aws_result r;
	map(403, NULL,
	    "<ErrorResponse><Error><Type>Sender</Type><Code>AuthorizationError</Code>"
	    "<Message>User is not authorized &amp; &lt;denied&gt;</Message></Error>"
	    "<RequestId>x</RequestId></ErrorResponse>",
	    &r);
	assert_string_equal(r.code, "AuthorizationError");
	assert_string_equal(r.message, "User is not authorized & <denied>");
	assert_int_equal(r.outcome, KR_PERMANENT);

	map(400, NULL,
	    "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message>"
	    "</Error></ErrorResponse>",
	    &r);
	assert_int_equal(r.outcome, KR_RETRYABLE);

	/* 5xx: retryable whatever the body says; a body that is neither JSON nor XML */
	map(503, NULL, "Service\nUnavailable", &r);
	assert_string_equal(r.code, "HTTP503");
	assert_string_equal(r.message, "HTTP 503: Service Unavailable");
	assert_int_equal(r.outcome, KR_RETRYABLE);

	/* not well-formed JSON: the body's start is the message */
	map(400, NULL, "{\"__type\":", &r);
	assert_string_equal(r.code, "HTTP400");
	assert_int_equal(r.outcome, KR_PERMANENT);

	map(200, NULL, "{}", &r);
	assert_true(r.ok);
	assert_int_equal(r.outcome, KR_DELIVERED);
}

static void test_error_transport(void **state)
{
	(void)state;
	struct kr_aws_result r;
	struct kr_http_response t = {.status = 0, .error = "connect timed out", .timed_out = true,
				     .body = "", .retry_after_ms = 2000};
	kr_aws_error_of(&t, &r);
	assert_string_equal(r.code, "Timeout");
	assert_int_equal(r.outcome, KR_RETRYABLE);
	assert_true(r.not_before_ms > kr_wall_ms());
	t.timed_out = false;
	t.error = "Connection refused";
	kr_aws_error_of(&t, &r);
	assert_string_equal(r.code, "ConnectionError");
	assert_string_equal(r.message, "Connection refused");
	assert_int_equal(r.outcome, KR_RETRYABLE);
}

/* ---- region, endpoint, credentials ---- */

static char dir[] = "/tmp/kr-test-aws-XXXXXX";

static void clear_env(void)
{
	static const char *const vars[] = {
		"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
		"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
		"AWS_ENDPOINT_URL_SQS", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
		"http_proxy", "HTTPS_PROXY", "https_proxy", "no_proxy", "NO_PROXY",
		"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_EC2_METADATA_SERVICE_ENDPOINT"};
	for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
		unsetenv(vars[i]);
	char p[256];
	snprintf(p, sizeof p, "%s/nonexistent", dir);
	setenv("AWS_SHARED_CREDENTIALS_FILE", p, 1);
	setenv("AWS_CONFIG_FILE", p, 1);
	/* not this machine's instance role, if it has one */
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

static void write_file(const char *name, const char *text, char *path, size_t cap)
{
	snprintf(path, cap, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static const struct kr_aws_service sqs = {"sqs", "SQS"};

static enum kr_err make(const struct kr_aws_conf *c, struct kr_aws **a, char *err)
{
	static struct kr_loop *loop;
	if (!loop)
		loop = kr_loop_new();
	err[0] = 0;
	return kr_aws_new(loop, c, &sqs, a, err);
}

static void test_region_endpoint(void **state)
{
	(void)state;
	clear_env();
	setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", 1);
	struct kr_aws_conf c = {.connect_timeout_ms = 1000};
	struct kr_aws *a = NULL;
	char err[KR_ERRBUF];
	assert_int_equal(make(&c, &a, err), KR_ERR_CONFIG);
	assert_non_null(strstr(err, "no AWS region"));

	setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
	assert_int_equal(make(&c, &a, err), KR_OK);
	assert_string_equal(kr_aws_region(a), "eu-west-1");
	assert_string_equal(kr_aws_endpoint(a), "https://sqs.eu-west-1.amazonaws.com");
	kr_aws_free(a);

	setenv("AWS_REGION", "cn-north-1", 1);
	assert_int_equal(make(&c, &a, err), KR_OK);
	assert_string_equal(kr_aws_region(a), "cn-north-1");
	assert_string_equal(kr_aws_endpoint(a), "https://sqs.cn-north-1.amazonaws.com.cn");
	kr_aws_free(a);

	setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1/", 1);
	assert_int_equal(make(&c, &a, err), KR_OK);
	assert_string_equal(kr_aws_endpoint(a), "http://127.0.0.1:1");
	kr_aws_free(a);
	setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:2", 1);
	assert_int_equal(make(&c, &a, err), KR_OK);
	assert_string_equal(kr_aws_endpoint(a), "http://127.0.0.1:2");
	kr_aws_free(a);

	c.region = "us-west-2";
	c.endpoint = "http://localhost:3";
	assert_int_equal(make(&c, &a, err), KR_OK);
	assert_string_equal(kr_aws_region(a), "us-west-2");
	assert_string_equal(kr_aws_endpoint(a), "http://localhost:3");
	kr_aws_free(a);

	/* the profile's region, from the config file */
	clear_env();
	setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "secret-secret", 1);
	char cfg[256];
	write_file("config", "[default]\nregion = ap-south-1\n[profile other]\n  region=sa-east-1 \n",
		   cfg, sizeof cfg);
	setenv("AWS_CONFIG_FILE", cfg, 1);
	struct kr_aws_conf d = {.connect_timeout_ms = 1000};
	assert_int_equal(make(&d, &a, err), KR_OK);
	assert_string_equal(kr_aws_region(a), "ap-south-1");
	kr_aws_free(a);
	d.profile = "other";
	assert_int_equal(make(&d, &a, err), KR_OK);
	assert_string_equal(kr_aws_region(a), "sa-east-1");
	kr_aws_free(a);
}

static void test_credentials(void **state)
{
	(void)state;
	clear_env();
	setenv("AWS_REGION", "us-east-1", 1);
	struct kr_aws_conf c = {.connect_timeout_ms = 1000};
	struct kr_aws *a = NULL;
	char err[KR_ERRBUF];
	/* none at all: the message says where they may come from */
	assert_int_equal(make(&c, &a, err), KR_ERR_CONFIG);
	assert_non_null(strstr(err, "no AWS credentials"));
	assert_non_null(strstr(err, "profile default"));

	setenv("AWS_ACCESS_KEY_ID", "AKIDONLY", 1);
	assert_int_equal(make(&c, &a, err), KR_ERR_CONFIG);
	assert_non_null(strstr(err, "AWS_SECRET_ACCESS_KEY"));
	unsetenv("AWS_ACCESS_KEY_ID");

	/* the shared credentials file, by profile; comments and blanks */
	char creds[256];
	write_file("credentials",
		   "# keys\n[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = "
		   "s3cr3t-default\n\n[ops]\n; other\naws_access_key_id=AKIDOPS\n"
		   "aws_secret_access_key=s3cr3t-ops\naws_session_token = tok-ops\n"
		   "[half]\naws_access_key_id=AKIDHALF\n",
		   creds, sizeof creds);
	setenv("AWS_SHARED_CREDENTIALS_FILE", creds, 1);
	assert_int_equal(make(&c, &a, err), KR_OK);
	kr_aws_free(a);
	setenv("AWS_PROFILE", "ops", 1);
	assert_int_equal(make(&c, &a, err), KR_OK);
	kr_aws_free(a);
	c.profile = "half";
	assert_int_equal(make(&c, &a, err), KR_ERR_CONFIG);
	assert_non_null(strstr(err, "profile half has aws_access_key_id but no"));
	assert_null(strstr(err, "s3cr3t"));

	/* credential_process in the config file */
	char script[256], cfg[256], text[600];
	write_file("proc.sh",
		   "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKIDPROC\", "
		   "\"SecretAccessKey\": \"s3cr3t-proc\", \"SessionToken\": \"tok\", "
		   "\"Expiration\": \"2099-01-01T00:00:00Z\"}'\n",
		   script, sizeof script);
	snprintf(text, sizeof text,
		 "[profile proc]\ncredential_process = sh %s\n"
		 "[profile v2]\ncredential_process = echo '{\"Version\": 2}'\n"
		 "[profile fails]\ncredential_process = sh -c 'exit 3'\n"
		 "[profile notjson]\ncredential_process = echo hello\n",
		 script);
	write_file("config", text, cfg, sizeof cfg);
	setenv("AWS_CONFIG_FILE", cfg, 1);
	c.profile = "proc";
	assert_int_equal(make(&c, &a, err), KR_OK);
	kr_aws_free(a);
	c.profile = "v2";
	assert_int_not_equal(make(&c, &a, err), KR_OK);
	assert_non_null(strstr(err, "\"Version\": 1"));
	c.profile = "fails";
	assert_int_not_equal(make(&c, &a, err), KR_OK);
	assert_non_null(strstr(err, "exit status 3"));
	c.profile = "notjson";
	assert_int_not_equal(make(&c, &a, err), KR_OK);
	assert_non_null(strstr(err, "did not write a JSON object"));

	/* the environment comes before the files */
	c.profile = "half";
	setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-env", 1);
	assert_int_equal(make(&c, &a, err), KR_OK);
	kr_aws_free(a);
}

/* ---- a signed call ---- */

static int listen_fd, port;
static char request[16384];
static const char *reply;

static void *serve_once(void *arg)
{
	(void)arg;
	int fd = accept(listen_fd, NULL, NULL);
	if (fd < 0)
		return NULL;
	size_t have = 0, want = SIZE_MAX;
	while (have < want) {
		ssize_t r = read(fd, request + have, sizeof request - have - 1);
		if (r <= 0)
			break;
		have += (size_t)r;
		request[have] = 0;
		char *end = strstr(request, "\r\n\r\n");
		char *cl = strcasestr(request, "\r\ncontent-length:");
		if (end && cl && cl < end)
			want = (size_t)(end - request) + 4 + strtoul(cl + 17, NULL, 10);
	}
	if (write(fd, reply, strlen(reply)) < 0)
		perror("write");
	close(fd);
	return NULL;
}

struct got {
	bool done;
	struct kr_aws_result r;
};

static void on_done(void *arg, const struct kr_aws_result *r)
{
	struct got *g = arg;
	g->done = true;
	g->r = *r;
	g->r.http = NULL;
}

static void test_signed_call(void **state)
{
	(void)state;
	listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof sa;
	assert_int_equal(bind(listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(listen(listen_fd, 4), 0);
	assert_int_equal(getsockname(listen_fd, (struct sockaddr *)&sa, &l), 0);
	port = ntohs(sa.sin_port);
	/* the service echoes the secret and the token in its message: both are blotted out */
	static const char err_body[] =
		"{\"__type\":\"com.amazon.coral.service#AccessDeniedException\",\"message\":\"bad "
		"s3cr3t-signing-key and tok-session-xyz\"}";
	static char reply_buf[512];
	snprintf(reply_buf, sizeof reply_buf,
		 "HTTP/1.1 403 Forbidden\r\nContent-Type: application/x-amz-json-1.0\r\n"
		 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		 sizeof err_body - 1, err_body);
	reply = reply_buf;
	pthread_t t;
	pthread_create(&t, NULL, serve_once, NULL);

	clear_env();
	setenv("KR_TEST_AKID", "AKIDSIGN", 1);
	setenv("KR_TEST_SECRET", "s3cr3t-signing-key", 1);
	setenv("KR_TEST_TOKEN", "tok-session-xyz", 1);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
	struct kr_aws_conf c = {
		.region = "us-east-1",
		.endpoint = url,
		.access_key_id = {"KR_TEST_AKID", getenv("KR_TEST_AKID")},
		.secret_access_key = {"KR_TEST_SECRET", getenv("KR_TEST_SECRET")},
		.session_token = {"KR_TEST_TOKEN", getenv("KR_TEST_TOKEN")},
		.connect_timeout_ms = 2000,
	};
	struct kr_loop *loop = kr_loop_new();
	struct kr_aws *a = NULL;
	char err[KR_ERRBUF];
	assert_int_equal(kr_aws_new(loop, &c, &sqs, &a, err), KR_OK);
	struct got g = {0};
	static const char body[] = "{\"QueueUrl\":\"q\"}";
	struct kr_aws_call call = {.path = "/", .target = "AmazonSQS.SendMessageBatch",
				   .body = body, .body_len = sizeof body - 1};
	assert_int_equal(kr_aws_send(a, &call, on_done, &g), KR_OK);
	for (int i = 0; i < 500 && !g.done; i++)
		kr_loop_run_once(loop, 20);
	assert_true(g.done);
	pthread_join(t, NULL);
	assert_false(g.r.ok);
	assert_int_equal(g.r.status, 403);
	assert_string_equal(g.r.code, "AccessDeniedException");
	assert_int_equal(g.r.outcome, KR_PERMANENT);
	assert_null(strstr(g.r.message, "s3cr3t-signing-key"));
	assert_null(strstr(g.r.message, "tok-session-xyz"));
	assert_non_null(strstr(g.r.message, "bad *** and ***"));
	/* what went out */
	assert_non_null(strstr(request, "POST / HTTP/1.1"));
	assert_non_null(strstr(request, "X-Amz-Target: AmazonSQS.SendMessageBatch"));
	assert_non_null(strstr(request, "Content-Type: application/x-amz-json-1.0"));
	assert_non_null(strstr(request, "x-amz-security-token: tok-session-xyz") ||
			strstr(request, "X-Amz-Security-Token: tok-session-xyz"));
	assert_non_null(strstr(request, "Credential=AKIDSIGN/"));
	assert_non_null(strstr(request, "/us-east-1/sqs/aws4_request"));
	assert_null(strstr(request, "s3cr3t-signing-key"));
	assert_non_null(strstr(request, body));
	kr_aws_free(a);
	kr_loop_free(loop);
	close(listen_fd);
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_json),      cmocka_unit_test(test_error_xml),
		cmocka_unit_test(test_error_transport), cmocka_unit_test(test_region_endpoint),
		cmocka_unit_test(test_credentials),     cmocka_unit_test(test_signed_call),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
