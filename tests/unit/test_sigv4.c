/* Unit tests for router/io/sigv4.h: signatures of AWS's SigV4 test suite (get-vanilla,
 * get-vanilla-query-order-key-case) and of a request as kr_aws sends one (a Lambda function ARN
 * in the path, a query, a port, content type, target and session token), whose expected
 * signature was computed with botocore's SigV4Auth, the signer of AWS's Python SDK. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sigv4.h"

#define AKID "AKIDEXAMPLE"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define NOW ((time_t)1440938160) /* 20150830T123600Z */

static void sign(const char *method, const char *url, const char *const *headers,
		 const char *body, const char *token, char *lines[3])
{
	struct kr_sigv4_request r = {.method = method,
				     .url = url,
				     .headers = headers,
				     .body = body,
				     .body_len = body ? strlen(body) : 0,
				     .access_key_id = AKID,
				     .secret_key = SECRET,
				     .session_token = token,
				     .region = "us-east-1",
				     .service = "service",
				     .now = NOW};
	assert_true(kr_sigv4_sign(&r, lines));
}

static void test_get_vanilla(void **state)
{
	(void)state;
	char *l[3];
	sign("GET", "http://example.amazonaws.com/", NULL, NULL, NULL, l);
	assert_string_equal(l[0], "X-Amz-Date: 20150830T123600Z");
	assert_null(l[1]);
	assert_string_equal(l[2], "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/"
				  "us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, "
				  "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1"
				  "d763fbf31");
	kr_sigv4_free(l);
	/* no path at all is "/"; the scheme's own port is not in the Host header */
	sign("GET", "http://example.amazonaws.com:80", NULL, NULL, NULL, l);
	assert_non_null(strstr(l[2], "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8"));
	kr_sigv4_free(l);
}

static void test_query_order(void **state)
{
	(void)state;
	char *l[3];
	sign("GET", "http://example.amazonaws.com/?Param2=value2&Param1=value1", NULL, NULL, NULL,
	     l);
	assert_non_null(strstr(l[2], "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3"
				     "219ec94cdf2500"));
	kr_sigv4_free(l);
}

static void test_encoded_path_token_and_headers(void **state)
{
	(void)state;
	static const char *const headers[] = {"Content-Type: application/json",
					      "X-Amz-Target:  A.B ", "Expect:",
					      "Accept: */*", NULL};
	char *l[3];
	sign("POST",
	     "http://example.amazonaws.com:8080/2015-03-31/functions/"
	     "arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af/invocations?Qualifier=prod",
	     headers, "{\"a\": 1}", "tok", l);
	assert_string_equal(l[1], "X-Amz-Security-Token: tok");
	assert_non_null(strstr(l[2], "SignedHeaders=content-type;host;x-amz-date;"
				     "x-amz-security-token;x-amz-target, "
				     "Signature=5aa1ff3e3019353efa89485eb24d5af90a58813d4c8f9b8925c"
				     "71259140d067d"));
	assert_null(strstr(l[2], SECRET));
	kr_sigv4_free(l);
	assert_null(l[2]);
}

static void test_unreadable_url(void **state)
{
	(void)state;
	char *l[3];
	struct kr_sigv4_request r = {.method = "GET", .url = "no-scheme", .access_key_id = AKID,
				     .secret_key = SECRET, .region = "r", .service = "s"};
	assert_false(kr_sigv4_sign(&r, l));
	assert_null(l[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_vanilla),
		cmocka_unit_test(test_query_order),
		cmocka_unit_test(test_encoded_path_token_and_headers),
		cmocka_unit_test(test_unreadable_url),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
