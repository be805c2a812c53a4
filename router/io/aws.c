/* kr_aws: region, endpoint, credentials and error mapping for AWS calls (see aws.h). */
#include "aws.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "buf.h"
#include "engine.h"
#include "json.h"
#include "log.h"
#include "sigv4.h"

const char *const kr_aws_schemes[] = {"http", "https", NULL};

/* The AWS options alone, for the reference (`kmsrouter help config`): a plugin's table has
 * them at offsets in its own struct. */
struct aws_only {
	struct kr_aws_conf aws;
};
const struct kr_option kr_aws_options[] = {
	KR_AWS_OPTIONS(struct aws_only, aws),
	{0},
};

bool kr_aws_options_in(const struct kr_option *table)
{
	for (const struct kr_option *a = kr_aws_options; a->name; a++) {
		const struct kr_option *o = table;
		while (o && o->name && strcmp(o->name, a->name) != 0)
			o++;
		if (!o || !o->name)
			return false;
	}
	return true;
}

/* The reference text of the AWS options (aws.h). */
const char kr_aws_doc[] =
	"The AWS options (region to role_session_name) are the same in every plugin that calls "
	"AWS. The region is region, else "
	"AWS_REGION, AWS_DEFAULT_REGION, the profile's region (where region is not set and a "
	"sink's topic, function or stream is given as an ARN, the ARN's region comes first). The "
	"endpoint is endpoint, else AWS_ENDPOINT_URL_<SERVICE> (SQS, SNS, LAMBDA, KINESIS, "
	"CLOUDWATCH_LOGS), AWS_ENDPOINT_URL, then the region's standard URL.\n\n"
	"Credentials come, in the AWS SDKs' order, from access_key_id_env + secret_access_key_env "
	"(+ session_token_env), the names of environment variables holding the keys; then "
	"AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; then web identity "
	"(AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, STS AssumeRoleWithWebIdentity, as on EKS); "
	"then the profile (profile, AWS_PROFILE or default) in the shared credentials and config "
	"files (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE, ~/.aws/), keys or "
	"credential_process (run again five minutes before the Expiration it gives); then the "
	"container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, with "
	"AWS_CONTAINER_AUTHORIZATION_TOKEN or _TOKEN_FILE: ECS, EKS Pod Identity); then the "
	"instance metadata service (IMDSv2; AWS_EC2_METADATA_DISABLED=true skips it). role_arn "
	"(with external_id, role_session_name) assumes a role through STS AssumeRole with the "
	"credentials found. Temporary credentials are fetched again five minutes before they "
	"expire, by a thread of their own while requests go on with the ones there are (requests "
	"in flight keep those they were signed with); a refresh that fails is logged and tried "
	"again after 5 s, then 10 s, up to every 60 s. A credential_process runs through /bin/sh "
	"and is given 60 s to answer, then killed. Keys never appear in logs, errors or "
	"metrics.\n\n"
	"Requests are signed with SigV4 (kmsrouter's own signer, verified against botocore's) and "
	"the service is verified with TLS (ca_file adds a CA bundle); connect_timeout_ms bounds "
	"connecting, a sink's timeout_ms each request. Throttling, 5xx, timeouts and connection "
	"errors are retried; other AWS errors (access denied, a bad signature, a resource that "
	"does not exist, validation) are permanent: a sink's delivery goes to the dead letter "
	"with the AWS error code and message.";

#define REFRESH_BEFORE_MS (5u * 60u * 1000u)
#define PROCESS_OUTPUT_MAX (64u * 1024u)
/* how long a credential_process may take, as in the AWS SDK for Go (a minute) */
#define PROCESS_TIMEOUT_MS 60000u
/* after a failed refresh, the next is tried this long after (doubling from the first, up to the
   most), not at every request */
#define REFRESH_RETRY_FIRST_MS 5000u
#define REFRESH_RETRY_MOST_MS 60000u

extern char **environ;

/* Credentials: counted, so that a refresh replaces them while calls signed with the old ones are
 * in flight. */
struct creds {
	unsigned refs;
	char *akid, *secret, *token;
	uint64_t expires_wall_ms; /* 0: never */
};

struct kr_aws {
	struct kr_loop *loop;
	struct kr_http *http;
	struct kr_aws_service svc;
	char *region, *endpoint, *ca_file;
	uint64_t connect_timeout_ms;
	char *process;     /* the profile's credential_process, when the credentials come from it */
	char *from;        /* where the credentials came from, for messages */
	enum source { SRC_STATIC, SRC_PROCESS, SRC_WEB_IDENTITY, SRC_CONTAINER, SRC_IMDS } source;
	char *role_arn, *external_id, *session_name; /* assumed through STS over the chain's */
	struct creds *creds;
	struct creds *base; /* with role_arn: the chain's, which AssumeRole is signed with */
	struct refresh *refresh;   /* the refresh running, or NULL */
	struct kr_timer *refresh_timer; /* starts the refresh when it is due, idle or not */
	uint64_t retry_at_ms;      /* kr_now_ms: no refresh before, after one failed */
	uint64_t retry_ms;         /* the wait after the last failure (0: the last one succeeded) */
};

/* A refresh of temporary credentials, on a thread of its own: STS, the container endpoint and
 * the instance metadata service take up to their timeouts to answer (10 s for STS), a
 * credential_process up to PROCESS_TIMEOUT_MS, and the loop must not wait for them. Requests
 * go on with the credentials there are, good for five more minutes; the thread hands over the
 * new ones through an eventfd the loop watches. The thread reads only this struct: copies of
 * what it needs (shadow: the strings of the kr_aws it refreshes, sign: the credentials to sign
 * AssumeRole with). When the kr_aws is freed before the thread ends, the thread is left to
 * free the struct itself (abandoned), and a credential_process it runs is killed. */
struct refresh {
	pthread_t thread;
	pthread_mutex_t mu;
	bool done, abandoned; /* under mu */
	pid_t child;          /* under mu: the credential_process running (its process group) */
	int efd;
	struct kr_aws shadow;
	bool need_source;     /* the chain's credentials are due too: fetch them again */
	struct creds *sign;   /* role_arn without need_source: a copy of the chain's */
	struct creds *nb, *c; /* results: the chain's new credentials (need_source, with role_arn),
				 the new credentials; NULL c: failed, with err */
	char err[KR_ERRBUF];
};

struct call {
	struct creds *creds;
	kr_aws_done_fn done;
	void *arg;
	char **lines; /* request headers we made */
	size_t nlines;
};

static void creds_put(struct creds *c)
{
	if (!c || --c->refs)
		return;
	if (c->secret)
		explicit_bzero(c->secret, strlen(c->secret));
	if (c->token)
		explicit_bzero(c->token, strlen(c->token));
	free(c->akid);
	free(c->secret);
	free(c->token);
	free(c);
}

static struct creds *creds_new(const char *akid, const char *secret, const char *token,
			       uint64_t expires)
{
	struct creds *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->refs = 1;
	c->akid = strdup(akid);
	c->secret = strdup(secret);
	c->token = token && *token ? strdup(token) : NULL;
	c->expires_wall_ms = expires;
	if (!c->akid || !c->secret || (token && *token && !c->token)) {
		creds_put(c);
		return NULL;
	}
	return c;
}

enum kr_err kr_aws_validate(const struct kr_aws_conf *c, const struct kr_opts_check *chk)
{
	if (!c->access_key_id.env != !c->secret_access_key.env)
		return kr_opts_reject(chk, c->access_key_id.env ? "secret_access_key_env"
								: "access_key_id_env",
				      "access_key_id_env and secret_access_key_env go together");
	if (c->session_token.env && !c->access_key_id.env)
		return kr_opts_reject(chk, "session_token_env",
				      "session_token_env needs access_key_id_env and "
				      "secret_access_key_env");
	if (c->external_id && !c->role_arn)
		return kr_opts_reject(chk, "external_id", "external_id needs role_arn");
	if (c->role_session_name && !c->role_arn)
		return kr_opts_reject(chk, "role_session_name", "role_session_name needs role_arn");
	if (c->role_arn && (strncmp(c->role_arn, "arn:", 4) != 0 || !strstr(c->role_arn, ":role/")))
		return kr_opts_reject(chk, "role_arn", "not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)");
	if (c->role_session_name &&
	    (strlen(c->role_session_name) < 2 || strlen(c->role_session_name) > 64 ||
	     strspn(c->role_session_name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					  "0123456789+=,.@-_") != strlen(c->role_session_name)))
		return kr_opts_reject(chk, "role_session_name",
				      "2 to 64 letters, digits and +=,.@-_");
	if (c->region && (!*c->region || strspn(c->region, "abcdefghijklmnopqrstuvwxyz0123456789-") !=
						 strlen(c->region)))
		return kr_opts_reject(chk, "region", "not a region name (like us-east-1)");
	return KR_OK;
}

/* ---- shared files ---- */

/* The value of key in the section named section of an INI file, as the AWS CLI reads them:
 * "[name]" sections, "key = value" lines, '#' and ';' comments. A new string or NULL. */
static char *ini_get(const char *path, const char *section, const char *key)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char line[4096];
	bool in = false;
	char *val = NULL;
	while (!val && fgets(line, sizeof line, f)) {
		char *p = line;
		while (isspace((unsigned char)*p))
			p++;
		char *end = p + strlen(p);
		while (end > p && isspace((unsigned char)end[-1]))
			*--end = 0;
		if (!*p || *p == '#' || *p == ';')
			continue;
		if (*p == '[') {
			char *close = strchr(p, ']');
			if (!close)
				continue;
			*close = 0;
			p++;
			while (isspace((unsigned char)*p))
				p++;
			char *e = close;
			while (e > p && isspace((unsigned char)e[-1]))
				*--e = 0;
			in = strcmp(p, section) == 0;
			continue;
		}
		if (!in)
			continue;
		char *eq = strchr(p, '=');
		if (!eq)
			continue;
		char *k = p, *ke = eq;
		while (ke > k && isspace((unsigned char)ke[-1]))
			ke--;
		if ((size_t)(ke - k) != strlen(key) || strncmp(k, key, (size_t)(ke - k)) != 0)
			continue;
		char *v = eq + 1;
		while (isspace((unsigned char)*v))
			v++;
		val = strdup(v);
	}
	explicit_bzero(line, sizeof line);
	fclose(f);
	return val;
}

static char *home_file(const char *env, const char *rel)
{
	const char *p = getenv(env);
	if (p && *p)
		return strdup(p);
	const char *home = getenv("HOME");
	if (!home || !*home)
		return NULL;
	char *out;
	return asprintf(&out, "%s/%s", home, rel) < 0 ? NULL : out;
}

/* key of profile: the credentials file's [profile], then the config file's [profile profile]
 * ([default] for default). */
static char *profile_get(const char *profile, const char *key, bool credentials_file_too)
{
	char *v = NULL;
	if (credentials_file_too) {
		char *cf = home_file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
		if (cf)
			v = ini_get(cf, profile, key);
		free(cf);
	}
	if (!v) {
		char *cfg = home_file("AWS_CONFIG_FILE", ".aws/config");
		char section[256];
		if (strcmp(profile, "default") == 0)
			snprintf(section, sizeof section, "default");
		else
			snprintf(section, sizeof section, "profile %s", profile);
		if (cfg)
			v = ini_get(cfg, section, key);
		free(cfg);
	}
	return v;
}

static const char *profile_name(const struct kr_aws_conf *c)
{
	if (c->profile)
		return c->profile;
	const char *p = getenv("AWS_PROFILE");
	return p && *p ? p : "default";
}

/* "2024-03-01T12:00:00Z" (or with fractions / an offset) as wall-clock ms; 0 when unreadable. */
static uint64_t iso8601_ms(const char *s)
{
	int64_t t = kr_parse_rfc3339_ms(s);
	return t > 0 ? (uint64_t)t : 0;
}

/* Credentials in JSON: {"AccessKeyId", "SecretAccessKey", token_key, "Expiration"}, as a
 * credential_process writes them (with "Version": 1) and the container endpoint and the instance
 * metadata serve them. from names the source in messages. */
static struct creds *creds_of_json(const struct kr_buf *b, const char *from, const char *token_key,
				   bool version1, char *err)
{
	struct kr_json *j = NULL;
	struct creds *c = NULL;
	if (kr_json_parse(b->p ? b->p : "", b->len, &(struct kr_json_opts){.last_key_wins = true},
			  &j, NULL, NULL) != KR_OK ||
	    j->type != KR_JSON_OBJECT) {
		kr_errf(err, KR_ERR_IO, "%s did not write a JSON object", from);
		kr_json_free(j);
		return NULL;
	}
	const struct kr_json *ak = kr_json_get(j, "AccessKeyId");
	const struct kr_json *sk = kr_json_get(j, "SecretAccessKey");
	const struct kr_json *tk = kr_json_get(j, token_key);
	const struct kr_json *ex = kr_json_get(j, "Expiration");
	const struct kr_json *ver = kr_json_get(j, "Version");
	if (version1 && (!ver || ver->type != KR_JSON_NUMBER || ver->num != 1))
		kr_errf(err, KR_ERR_IO, "%s must write \"Version\": 1", from);
	else if (!ak || ak->type != KR_JSON_STRING || !sk || sk->type != KR_JSON_STRING ||
		 (tk && tk->type != KR_JSON_STRING) || (ex && ex->type != KR_JSON_STRING))
		kr_errf(err, KR_ERR_IO,
			"%s must give AccessKeyId and SecretAccessKey strings (%s and Expiration "
			"optional)",
			from, token_key);
	else if (ex && !iso8601_ms(ex->str))
		kr_errf(err, KR_ERR_IO, "%s gave an Expiration that is not an ISO 8601 time", from);
	else if (!(c = creds_new(ak->str, sk->str, tk ? tk->str : NULL,
				 ex ? iso8601_ms(ex->str) : 0)))
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
	if (sk && sk->type == KR_JSON_STRING)
		explicit_bzero(sk->str, sk->len);
	if (tk && tk->type == KR_JSON_STRING)
		explicit_bzero(tk->str, tk->len);
	kr_json_free(j);
	return c;
}

/* Whether the refresh (NULL: none, at start) was abandoned; otherwise records child as its
 * credential_process (0: none any more). */
static bool note_child(struct refresh *r, pid_t child)
{
	if (!r)
		return false;
	pthread_mutex_lock(&r->mu);
	bool gone = r->abandoned;
	r->child = gone ? 0 : child;
	pthread_mutex_unlock(&r->mu);
	return gone;
}

/* Runs the credential_process command (/bin/sh -c, in a process group of its own, with the
 * signals kmsrouter blocks or ignores back to normal) and reads its JSON ({"Version": 1,
 * "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}). Gives it PROCESS_TIMEOUT_MS
 * to finish, then kills its group. r: the refresh it runs for (NULL at start), which may kill
 * it sooner. */
static struct creds *run_process(const char *cmd, const char *profile, struct refresh *r,
				 char *err)
{
	char from[320];
	snprintf(from, sizeof from, "profile %s: its credential_process", profile);
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0) {
		kr_errf(err, KR_ERR_IO, "%s cannot be run: %s", from, strerror(errno));
		return NULL;
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawnattr_init(&at);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
					      POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &all);
	char *argv[] = {"sh", "-c", (char *)cmd, NULL};
	pid_t pid = 0;
	int se = note_child(r, 0) ? ECANCELED : posix_spawn(&pid, "/bin/sh", &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(fds[1]);
	if (se != 0) {
		close(fds[0]);
		kr_errf(err, KR_ERR_IO, "%s cannot be run: %s", from, strerror(se));
		return NULL;
	}
	if (note_child(r, pid))
		kill(-pid, SIGKILL); /* abandoned meanwhile */
	uint64_t deadline = kr_now_ms() + PROCESS_TIMEOUT_MS;
	struct kr_buf out = {0};
	char chunk[4096];
	bool big = false, late = false;
	for (;;) {
		uint64_t now = kr_now_ms();
		struct pollfd p = {.fd = fds[0], .events = POLLIN};
		int k = now < deadline ? poll(&p, 1, (int)(deadline - now)) : 0;
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			late = k == 0;
			break;
		}
		ssize_t n = read(fds[0], chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (out.len + (size_t)n > PROCESS_OUTPUT_MAX || !kr_buf_append(&out, chunk, (size_t)n))
			big = true;
	}
	explicit_bzero(chunk, sizeof chunk);
	close(fds[0]);
	/* its stdout closed (or its time is up): what is left of its time to exit */
	if (late)
		kill(-pid, SIGKILL);
	int st = -1;
	for (;;) {
		pid_t w = waitpid(pid, &st, late ? 0 : WNOHANG);
		if (w == pid || (w < 0 && errno != EINTR))
			break;
		if (w == 0 && kr_now_ms() >= deadline) {
			late = true;
			kill(-pid, SIGKILL);
		} else if (w == 0) {
			poll(NULL, 0, 10);
		}
	}
	note_child(r, 0);
	struct creds *c = NULL;
	if (late)
		kr_errf(err, KR_ERR_IO, "%s did not finish within %u s and was killed", from,
			PROCESS_TIMEOUT_MS / 1000);
	else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		kr_errf(err, KR_ERR_IO, "%s failed (exit status %d)", from,
			!WIFEXITED(st) ? -1 : WEXITSTATUS(st));
	else if (big)
		kr_errf(err, KR_ERR_IO, "%s wrote more than %u bytes", from, PROCESS_OUTPUT_MAX);
	else
		c = creds_of_json(&out, from, "SessionToken", true, err);
	if (out.p)
		explicit_bzero(out.p, out.len);
	kr_buf_free(&out);
	return c;
}

/* ---- credentials from services: STS, the container endpoint, the instance metadata ---- */

struct fetched {
	long status;
	struct kr_buf body;
	char error[256];
};

static void fetched_cb(void *arg, const struct kr_http_response *r)
{
	struct fetched *f = arg;
	f->status = r->status;
	if (r->error)
		snprintf(f->error, sizeof f->error, "%s", r->error);
	if (!kr_buf_append(&f->body, r->body, r->body_len))
		snprintf(f->error, sizeof f->error, "out of memory");
}

static void fetched_free(struct fetched *f)
{
	if (f->body.p)
		explicit_bzero(f->body.p, f->body.len);
	kr_buf_free(&f->body);
}

/* A blocking call (credentials are needed before anything else can go); f->status 0 and
 * f->error when there was no response. sign: NULL for an unsigned call. */
static enum kr_err fetch(const char *method, const char *url, const char *const *headers,
			 const char *body, uint64_t timeout_ms, const struct creds *sign,
			 const char *region, struct fetched *f, char *err)
{
	struct kr_http_request req = {.method = method,
				      .url = url,
				      .headers = headers,
				      .body = body,
				      .body_len = body ? strlen(body) : 0,
				      .timeout_ms = timeout_ms,
				      .connect_timeout_ms = timeout_ms < 1000 ? timeout_ms : 1000,
				      .max_body = 64 * 1024,
				      .auth = sign ? KR_HTTP_AUTH_SIGV4 : KR_HTTP_AUTH_NONE,
				      .user = sign ? sign->akid : NULL,
				      .password = sign ? sign->secret : NULL,
				      .token = sign ? sign->token : NULL,
				      .region = region,
				      .service = "sts"};
	return kr_http_send_sync(&req, fetched_cb, f, err);
}

/* The <Credentials> of an STS answer (AssumeRole, AssumeRoleWithWebIdentity). */
static struct creds *creds_of_sts(const struct fetched *f, const char *what, char *err)
{
	const char *b = f->body.p ? f->body.p : "", *e = b + f->body.len;
	if (f->status != 200) {
		char code[96] = "", msg[256] = "";
		kr_aws_xml_text(b, e, "Code", code, sizeof code);
		kr_aws_xml_text(b, e, "Message", msg, sizeof msg);
		if (!f->status)
			snprintf(code, sizeof code, "%.95s", f->error);
		else if (!*code)
			snprintf(code, sizeof code, "HTTP %ld", f->status);
		kr_errf(err, KR_ERR_IO, "%s failed: %s%s%s", what, code, *msg ? ": " : "", msg);
		return NULL;
	}
	char ak[256], sk[256], tk[4096], ex[64] = "";
	const char *cs = b, *ca, *cz;
	struct creds *c = NULL;
	if (!kr_aws_xml_next(&cs, e, "Credentials", &ca, &cz) ||
	    !kr_aws_xml_text(ca, cz, "AccessKeyId", ak, sizeof ak) ||
	    !kr_aws_xml_text(ca, cz, "SecretAccessKey", sk, sizeof sk) ||
	    !kr_aws_xml_text(ca, cz, "SessionToken", tk, sizeof tk))
		kr_errf(err, KR_ERR_IO, "%s answered without credentials", what);
	else if (kr_aws_xml_text(ca, cz, "Expiration", ex, sizeof ex),
		 !(c = creds_new(ak, sk, tk, iso8601_ms(ex))))
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
	explicit_bzero(sk, sizeof sk);
	explicit_bzero(tk, sizeof tk);
	return c;
}

static char *sts_endpoint(const char *region)
{
	const char *e = getenv("AWS_ENDPOINT_URL_STS");
	if (!e || !*e)
		e = getenv("AWS_ENDPOINT_URL");
	char *out;
	if (e && *e)
		return asprintf(&out, "%s/", e) < 0 ? NULL : out;
	return asprintf(&out, "https://sts.%s.amazonaws.com%s/", region,
			strncmp(region, "cn-", 3) == 0 ? ".cn" : "") < 0
		       ? NULL
		       : out;
}

/* An STS call of the query protocol: params (already form-encoded) after Action and Version. */
static struct creds *sts_call(struct kr_aws *a, const char *params, const struct creds *sign,
			      const char *what, char *err)
{
	char *url = sts_endpoint(a->region);
	struct kr_buf body = {0};
	struct creds *c = NULL;
	static const char *const hdr[] = {"Content-Type: application/x-www-form-urlencoded",
					  "Accept: text/xml", NULL};
	if (!url || !kr_buf_puts(&body, params)) {
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
	} else {
		struct fetched f = {0};
		if (fetch("POST", url, hdr, body.p, 10000, sign, a->region, &f, err) == KR_OK)
			c = creds_of_sts(&f, what, err);
		fetched_free(&f);
	}
	if (body.p)
		explicit_bzero(body.p, body.len);
	kr_buf_free(&body);
	free(url);
	return c;
}

static bool form(struct kr_buf *b, const char *name, const char *v)
{
	return kr_buf_puts(b, "&") && kr_buf_puts(b, name) && kr_buf_puts(b, "=") &&
	       kr_buf_urlencode(b, v, strlen(v));
}

static char *read_small_file(const char *path)
{
	char *data;
	size_t len;
	char err[KR_ERRBUF];
	if (kr_read_file(path, &data, &len, err) != KR_OK)
		return NULL;
	while (len && (data[len - 1] == '\n' || data[len - 1] == '\r' || data[len - 1] == ' '))
		data[--len] = 0;
	return data;
}

/* AssumeRoleWithWebIdentity with the token of AWS_WEB_IDENTITY_TOKEN_FILE (EKS, IRSA). */
static struct creds *web_identity(struct kr_aws *a, char *err)
{
	const char *file = getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), *role = getenv("AWS_ROLE_ARN");
	const char *name = getenv("AWS_ROLE_SESSION_NAME");
	char *token = read_small_file(file);
	if (!token) {
		kr_errf(err, KR_ERR_IO, "cannot read AWS_WEB_IDENTITY_TOKEN_FILE %s", file);
		return NULL;
	}
	char session[64];
	snprintf(session, sizeof session, "kmsrouter-%ld", (long)getpid());
	struct kr_buf p = {0};
	struct creds *c = NULL;
	if (kr_buf_puts(&p, "Action=AssumeRoleWithWebIdentity&Version=2011-06-15") &&
	    form(&p, "RoleArn", role) && form(&p, "RoleSessionName", name && *name ? name : session) &&
	    form(&p, "WebIdentityToken", token))
		c = sts_call(a, p.p, NULL, "AssumeRoleWithWebIdentity (AWS_ROLE_ARN)", err);
	else
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
	explicit_bzero(token, strlen(token));
	free(token);
	if (p.p)
		explicit_bzero(p.p, p.len);
	kr_buf_free(&p);
	return c;
}

/* The container credentials endpoint (ECS, EKS Pod Identity). */
static struct creds *container(char *err)
{
	const char *rel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	char *url = NULL, *token = NULL;
	if (rel && *rel) {
		if (asprintf(&url, "http://169.254.170.2%s", rel) < 0)
			url = NULL;
	} else {
		url = strdup(full);
	}
	const char *tf = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	const char *tv = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	if (tf && *tf) {
		if (!(token = read_small_file(tf))) {
			free(url);
			kr_errf(err, KR_ERR_IO, "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE %s",
				tf);
			return NULL;
		}
	} else if (tv && *tv) {
		token = strdup(tv);
	}
	char *auth = NULL;
	if (token && asprintf(&auth, "Authorization: %s", token) < 0)
		auth = NULL;
	const char *hdr[] = {auth, NULL};
	struct creds *c = NULL;
	struct fetched f = {0};
	if (!url || (token && !auth))
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
	else if (fetch("GET", url, auth ? hdr : NULL, NULL, 5000, NULL, "", &f, err) != KR_OK)
		;
	else if (f.status != 200)
		kr_errf(err, KR_ERR_IO, "the container credentials endpoint answered %s%ld",
			f.status ? "HTTP " : f.error, f.status);
	else
		c = creds_of_json(&f.body, "the container credentials endpoint", "Token", false,
				  err);
	fetched_free(&f);
	if (token)
		explicit_bzero(token, strlen(token));
	if (auth)
		explicit_bzero(auth, strlen(auth));
	free(token);
	free(auth);
	free(url);
	return c;
}

/* The instance metadata service, IMDSv2: a session token, the role's name, its credentials. */
static struct creds *imds(char *err)
{
	const char *base = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	if (!base || !*base)
		base = "http://169.254.169.254";
	size_t bl = strlen(base);
	while (bl && base[bl - 1] == '/')
		bl--;
	char url[512], tokhdr[1200], role[256];
	struct fetched f = {0};
	struct creds *c = NULL;
	static const char *const ttl[] = {"X-aws-ec2-metadata-token-ttl-seconds: 21600", NULL};
	snprintf(url, sizeof url, "%.*s/latest/api/token", (int)bl, base);
	if (fetch("PUT", url, ttl, NULL, 1000, NULL, "", &f, err) != KR_OK)
		return NULL;
	if (f.status != 200 || !f.body.len || f.body.len > 1000) {
		kr_errf(err, KR_ERR_IO, "the instance metadata service gave no token (%s%ld)",
			f.status ? "HTTP " : f.error, f.status);
		fetched_free(&f);
		return NULL;
	}
	snprintf(tokhdr, sizeof tokhdr, "X-aws-ec2-metadata-token: %.*s", (int)f.body.len,
		 f.body.p);
	fetched_free(&f);
	const char *hdr[] = {tokhdr, NULL};
	struct fetched r = {0};
	snprintf(url, sizeof url, "%.*s/latest/meta-data/iam/security-credentials/", (int)bl, base);
	if (fetch("GET", url, hdr, NULL, 1000, NULL, "", &r, err) == KR_OK) {
		size_t n = r.body.p ? strcspn(r.body.p, "\r\n") : 0;
		if (r.status != 200 || !n || n >= sizeof role) {
			kr_errf(err, KR_ERR_IO,
				"the instance metadata service names no role (%s%ld): does the "
				"instance have an instance profile?",
				r.status ? "HTTP " : r.error, r.status);
		} else {
			memcpy(role, r.body.p, n);
			role[n] = 0;
			struct fetched k = {0};
			snprintf(url, sizeof url, "%.*s/latest/meta-data/iam/security-credentials/%s",
				 (int)bl, base, role);
			if (fetch("GET", url, hdr, NULL, 1000, NULL, "", &k, err) == KR_OK) {
				if (k.status != 200)
					kr_errf(err, KR_ERR_IO,
						"the instance metadata service gave no credentials "
						"for role %s (%s%ld)",
						role, k.status ? "HTTP " : k.error, k.status);
				else
					c = creds_of_json(&k.body, "the instance metadata service",
							  "Token", false, err);
			}
			fetched_free(&k);
		}
	}
	fetched_free(&r);
	explicit_bzero(tokhdr, sizeof tokhdr);
	return c;
}

/* The credentials of the chain's source, fetched again (a refresh). */
static struct creds *fetch_source(struct kr_aws *a, char *err)
{
	switch (a->source) {
	case SRC_PROCESS: {
		const char *p = a->from ? a->from : "?";
		return run_process(a->process, strncmp(p, "profile ", 8) ? p : p + 8, a->refresh,
				   err);
	}
	case SRC_WEB_IDENTITY:
		return web_identity(a, err);
	case SRC_CONTAINER:
		return container(err);
	case SRC_IMDS:
		return imds(err);
	default:
		a->creds->refs++;
		return a->creds;
	}
}

/* role_arn: AssumeRole, signed with base. */
static struct creds *assume_role(struct kr_aws *a, const struct creds *base, char *err)
{
	struct kr_buf p = {0};
	struct creds *c = NULL;
	if (kr_buf_puts(&p, "Action=AssumeRole&Version=2011-06-15&DurationSeconds=3600") &&
	    form(&p, "RoleArn", a->role_arn) && form(&p, "RoleSessionName", a->session_name) &&
	    (!a->external_id || form(&p, "ExternalId", a->external_id)))
		c = sts_call(a, p.p, base, "AssumeRole (role_arn)", err);
	else
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
	kr_buf_free(&p);
	return c;
}

/* The first credentials of the chain (aws.h). */
static enum kr_err find_creds(struct kr_aws *a, const struct kr_aws_conf *c, char *err)
{
	const char *from;
	const char *akid = NULL, *secret = NULL, *token = NULL;
	const char *wif = getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), *role = getenv("AWS_ROLE_ARN");
	const char *crel = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *cfull = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *noimds = getenv("AWS_EC2_METADATA_DISABLED");
	if (c->access_key_id.env) {
		akid = c->access_key_id.value;
		secret = c->secret_access_key.value;
		token = c->session_token.value;
		from = "the environment variables the options name";
	} else if (getenv("AWS_ACCESS_KEY_ID") && *getenv("AWS_ACCESS_KEY_ID")) {
		akid = getenv("AWS_ACCESS_KEY_ID");
		secret = getenv("AWS_SECRET_ACCESS_KEY");
		token = getenv("AWS_SESSION_TOKEN");
		from = "AWS_ACCESS_KEY_ID";
		if (!secret || !*secret)
			return kr_errf(err, KR_ERR_CONFIG,
				       "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
	} else if (wif && *wif) {
		if (!role || !*role)
			return kr_errf(err, KR_ERR_CONFIG,
				       "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not");
		a->source = SRC_WEB_IDENTITY;
		a->from = strdup("web identity (AWS_WEB_IDENTITY_TOKEN_FILE)");
		return (a->creds = web_identity(a, err)) ? KR_OK : KR_ERR_IO;
	} else {
		const char *profile = profile_name(c);
		char *k = profile_get(profile, "aws_access_key_id", true);
		char *s = profile_get(profile, "aws_secret_access_key", true);
		char *t = profile_get(profile, "aws_session_token", true);
		char *proc = k ? NULL : profile_get(profile, "credential_process", false);
		enum kr_err e = KR_OK;
		bool found = true;
		if (k && s) {
			if (!(a->creds = creds_new(k, s, t, 0)))
				e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
		} else if (k) {
			e = kr_errf(err, KR_ERR_CONFIG,
				    "profile %s has aws_access_key_id but no aws_secret_access_key",
				    profile);
		} else if (proc) {
			a->source = SRC_PROCESS;
			if (!(a->creds = run_process(proc, profile, NULL, err)))
				e = KR_ERR_IO;
			else
				a->process = strdup(proc);
		} else {
			found = false;
		}
		free(k);
		if (s)
			explicit_bzero(s, strlen(s));
		free(s);
		if (t)
			explicit_bzero(t, strlen(t));
		free(t);
		free(proc);
		if (e)
			return e;
		if (found) {
			if (asprintf(&a->from, "profile %s", profile) < 0)
				a->from = NULL;
			return KR_OK;
		}
		if ((crel && *crel) || (cfull && *cfull)) {
			a->source = SRC_CONTAINER;
			a->from = strdup("the container credentials endpoint");
			return (a->creds = container(err)) ? KR_OK : KR_ERR_IO;
		}
		if (!noimds || strcasecmp(noimds, "true") != 0) {
			char why[KR_ERRBUF];
			a->source = SRC_IMDS;
			a->from = strdup("the instance metadata service");
			if ((a->creds = imds(why)))
				return KR_OK;
			return kr_errf(err, KR_ERR_CONFIG,
				       "no AWS credentials: set access_key_id_env and "
				       "secret_access_key_env, or AWS_ACCESS_KEY_ID and "
				       "AWS_SECRET_ACCESS_KEY, or AWS_WEB_IDENTITY_TOKEN_FILE and "
				       "AWS_ROLE_ARN, or give profile %s keys or a credential_process "
				       "in the shared credentials or config file, or run where a "
				       "container or instance role provides them (%s)",
				       profile, why);
		}
		return kr_errf(err, KR_ERR_CONFIG,
			       "no AWS credentials: set access_key_id_env and "
			       "secret_access_key_env, or AWS_ACCESS_KEY_ID and "
			       "AWS_SECRET_ACCESS_KEY, or AWS_WEB_IDENTITY_TOKEN_FILE and "
			       "AWS_ROLE_ARN, or give profile %s keys or a credential_process in the "
			       "shared credentials or config file (the instance metadata service is "
			       "off: AWS_EC2_METADATA_DISABLED)",
			       profile);
	}
	if (!akid || !*akid || !secret || !*secret)
		return kr_errf(err, KR_ERR_CONFIG, "AWS credentials from %s are empty", from);
	if (!(a->creds = creds_new(akid, secret, token, 0)))
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	a->from = strdup(from);
	return KR_OK;
}

/* The role of role_arn over the chain's credentials (which stay in a->creds until then). */
static enum kr_err take_role(struct kr_aws *a, char *err)
{
	struct creds *base = a->creds;
	struct creds *c = assume_role(a, base, err);
	if (!c)
		return KR_ERR_IO;
	a->base = base;
	a->creds = c;
	return KR_OK;
}

static void refresh_free(struct refresh *r)
{
	struct kr_aws *sh = &r->shadow;
	free(sh->process);
	free(sh->from);
	free(sh->region);
	free(sh->role_arn);
	free(sh->external_id);
	free(sh->session_name);
	creds_put(r->sign);
	creds_put(r->nb);
	creds_put(r->c);
	if (r->efd >= 0)
		close(r->efd);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

/* The refresh thread: the chain's credentials again when they are due, then the role's. */
static void *refresh_run(void *arg)
{
	struct refresh *r = arg;
	struct creds *nb = NULL, *c = NULL;
	if (r->need_source)
		nb = fetch_source(&r->shadow, r->err);
	if (!r->shadow.role_arn) {
		c = nb;
		nb = NULL;
	} else if (r->need_source ? nb != NULL : r->sign != NULL) {
		c = assume_role(&r->shadow, r->need_source ? nb : r->sign, r->err);
		if (!c) {
			creds_put(nb);
			nb = NULL;
		}
	}
	kr_sigv4_thread_end();
	pthread_mutex_lock(&r->mu);
	r->nb = nb;
	r->c = c;
	r->done = true;
	bool gone = r->abandoned;
	if (!gone) {
		uint64_t one = 1;
		if (write(r->efd, &one, sizeof one) < 0) {
			/* cannot happen to an eventfd below its maximum; the loop looks at done */
		}
	}
	pthread_mutex_unlock(&r->mu);
	if (gone)
		refresh_free(r);
	return NULL;
}

/* Arms the refresh timer for when the credentials are due (five minutes before they expire),
 * or after a failure for when the next try may be. */
static void refresh_schedule(struct kr_aws *a)
{
	if (!a->refresh_timer || !a->creds->expires_wall_ms)
		return;
	uint64_t now = kr_wall_ms(), due = a->creds->expires_wall_ms > REFRESH_BEFORE_MS
						       ? a->creds->expires_wall_ms - REFRESH_BEFORE_MS
						       : 0;
	uint64_t delay = due > now ? due - now : 0;
	uint64_t mono = kr_now_ms();
	if (a->retry_at_ms > mono && a->retry_at_ms - mono > delay)
		delay = a->retry_at_ms - mono;
	kr_timer_start(a->refresh_timer, delay);
}

/* The refresh thread ended: its credentials replace the old ones (calls in flight keep those
 * they were signed with), or, when it failed, the old ones stay and the next try waits. */
static void on_refreshed(struct kr_loop *l, int fd, unsigned events, void *arg)
{
	(void)events;
	struct kr_aws *a = arg;
	struct refresh *r = a->refresh;
	kr_loop_unwatch(l, fd);
	pthread_join(r->thread, NULL); /* it has said it is done: it ends now */
	a->refresh = NULL;
	if (!r->c) {
		a->retry_ms = a->retry_ms ? a->retry_ms * 2 : REFRESH_RETRY_FIRST_MS;
		if (a->retry_ms > REFRESH_RETRY_MOST_MS)
			a->retry_ms = REFRESH_RETRY_MOST_MS;
		a->retry_at_ms = kr_now_ms() + a->retry_ms;
		char wait[32];
		snprintf(wait, sizeof wait, "%llu", (unsigned long long)(a->retry_ms / 1000));
		kr_log(KR_LOG_WARN, "aws", "msg",
		       "cannot refresh the credentials; keeping the old ones", "from",
		       a->from ? a->from : "?", "error", r->err, "retry_in_s", wait, NULL);
		refresh_free(r);
		refresh_schedule(a);
		return;
	}
	a->retry_ms = 0;
	/* credentials that are due as soon as they come (they last less than five minutes) are
	   fetched again after half their time, at most REFRESH_RETRY_MOST_MS: not back to back */
	uint64_t now = kr_wall_ms(), exp = r->c->expires_wall_ms;
	uint64_t gap = exp > now ? (exp - now) / 2 : 0;
	a->retry_at_ms = kr_now_ms() + (gap < REFRESH_RETRY_MOST_MS ? gap : REFRESH_RETRY_MOST_MS);
	if (a->role_arn && r->nb) {
		creds_put(a->base);
		a->base = r->nb;
		r->nb = NULL;
	}
	creds_put(a->creds);
	a->creds = r->c;
	r->c = NULL;
	refresh_free(r);
	refresh_schedule(a);
}

/* A copy of c (for another thread, which must not touch the counts), or NULL. */
static struct creds *creds_copy(const struct creds *c)
{
	return creds_new(c->akid, c->secret, c->token ? c->token : "", c->expires_wall_ms);
}

static bool dup_to(char **to, const char *s)
{
	return !s || (*to = strdup(s)) != NULL;
}

/* Starts the refresh thread; false (with err) when it cannot. */
static bool refresh_start(struct kr_aws *a, char *err)
{
	struct refresh *r = calloc(1, sizeof *r);
	if (!r) {
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
		return false;
	}
	r->efd = -1;
	pthread_mutex_init(&r->mu, NULL);
	struct creds *base = a->role_arn ? a->base : a->creds;
	r->need_source = base->expires_wall_ms &&
			 kr_wall_ms() + REFRESH_BEFORE_MS >= base->expires_wall_ms;
	struct kr_aws *sh = &r->shadow;
	sh->source = a->source;
	sh->refresh = r;
	bool ok = dup_to(&sh->process, a->process) && dup_to(&sh->from, a->from) &&
		  dup_to(&sh->region, a->region) && dup_to(&sh->role_arn, a->role_arn) &&
		  dup_to(&sh->external_id, a->external_id) &&
		  dup_to(&sh->session_name, a->session_name) &&
		  (!a->role_arn || r->need_source || (r->sign = creds_copy(base)));
	if (!ok) {
		refresh_free(r);
		kr_errf(err, KR_ERR_NOMEM, "out of memory");
		return false;
	}
	int e = 0;
	if ((r->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
	    kr_loop_watch(a->loop, r->efd, KR_IO_READ, on_refreshed, a) != 0) {
		e = errno;
	} else if ((e = pthread_create(&r->thread, NULL, refresh_run, r)) != 0) {
		kr_loop_unwatch(a->loop, r->efd);
	} else {
		a->refresh = r;
		return true;
	}
	refresh_free(r);
	kr_errf(err, KR_ERR_IO, "cannot start a thread to refresh them: %s", strerror(e));
	return false;
}

/* Temporary credentials are fetched again from five minutes before they expire, by a thread of
 * its own (struct refresh), while requests go on with the old ones; after a failure, not before
 * retry_at_ms. The refresh timer calls it when they are due, and so does every request (where
 * the timer could not be made). */
static void refresh_creds(struct kr_aws *a)
{
	if (!a->creds->expires_wall_ms || kr_wall_ms() + REFRESH_BEFORE_MS < a->creds->expires_wall_ms)
		return;
	if (a->refresh || kr_now_ms() < a->retry_at_ms)
		return;
	char err[KR_ERRBUF];
	if (!refresh_start(a, err)) {
		a->retry_ms = REFRESH_RETRY_MOST_MS;
		a->retry_at_ms = kr_now_ms() + a->retry_ms;
		kr_log(KR_LOG_WARN, "aws", "msg", "cannot refresh the credentials; keeping the old ones",
		       "from", a->from ? a->from : "?", "error", err, NULL);
		refresh_schedule(a);
	}
}

static void refresh_due(struct kr_loop *l, struct kr_timer *t, void *arg)
{
	(void)l;
	(void)t;
	refresh_creds(arg);
}

/* Leaves a refresh still running to end by itself (it frees what it has, and its
 * credential_process is killed), or frees one that ended. */
static void refresh_abandon(struct kr_aws *a)
{
	struct refresh *r = a->refresh;
	if (!r)
		return;
	a->refresh = NULL;
	kr_loop_unwatch(a->loop, r->efd);
	pthread_mutex_lock(&r->mu);
	bool done = r->done;
	if (!done) {
		r->abandoned = true;
		if (r->child > 0)
			kill(-r->child, SIGKILL);
		pthread_detach(r->thread);
	}
	pthread_mutex_unlock(&r->mu);
	if (done) {
		pthread_join(r->thread, NULL);
		refresh_free(r);
	}
}

/* ---- region and endpoint ---- */

static char *find_region(const struct kr_aws_conf *c)
{
	if (c->region)
		return strdup(c->region);
	const char *e = getenv("AWS_REGION");
	if (!e || !*e)
		e = getenv("AWS_DEFAULT_REGION");
	if (e && *e)
		return strdup(e);
	return profile_get(profile_name(c), "region", false);
}

static char *find_endpoint(const struct kr_aws_conf *c, const struct kr_aws_service *svc,
			   const char *region)
{
	if (c->endpoint)
		return strdup(c->endpoint);
	char var[64];
	snprintf(var, sizeof var, "AWS_ENDPOINT_URL_%s", svc->env_id);
	const char *e = getenv(var);
	if (!e || !*e)
		e = getenv("AWS_ENDPOINT_URL");
	if (e && *e)
		return strdup(e);
	char *out;
	bool cn = strncmp(region, "cn-", 3) == 0;
	return asprintf(&out, "https://%s.%s.amazonaws.com%s", svc->signing_name, region,
			cn ? ".cn" : "") < 0
		       ? NULL
		       : out;
}

enum kr_err kr_aws_new(struct kr_loop *loop, const struct kr_aws_conf *c,
		       const struct kr_aws_service *svc, struct kr_aws **out, char *err)
{
	struct kr_aws *a = calloc(1, sizeof *a);
	if (!a)
		return kr_errf(err, KR_ERR_NOMEM, "out of memory");
	a->loop = loop;
	a->svc = *svc;
	a->connect_timeout_ms = c->connect_timeout_ms;
	enum kr_err e = KR_OK;
	a->region = find_region(c);
	if (!a->region || !*a->region)
		e = kr_errf(err, KR_ERR_CONFIG,
			    "no AWS region: set region, AWS_REGION or the profile's region");
	if (!e && !(a->endpoint = find_endpoint(c, svc, a->region)))
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	/* no slash at the end: paths start with one */
	size_t n = a->endpoint ? strlen(a->endpoint) : 0;
	while (n && a->endpoint[n - 1] == '/')
		a->endpoint[--n] = 0;
	if (!e && c->ca_file && !(a->ca_file = strdup(c->ca_file)))
		e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
	if (!e)
		e = find_creds(a, c, err);
	if (!e && c->role_arn) {
		char session[64];
		snprintf(session, sizeof session, "kmsrouter-%ld", (long)getpid());
		if (!(a->role_arn = strdup(c->role_arn)) ||
		    (c->external_id && !(a->external_id = strdup(c->external_id))) ||
		    !(a->session_name = strdup(c->role_session_name ? c->role_session_name : session)))
			e = kr_errf(err, KR_ERR_NOMEM, "out of memory");
		else
			e = take_role(a, err);
	}
	if (!e)
		e = kr_http_new(loop, &a->http, err);
	if (e) {
		kr_aws_free(a);
		return e;
	}
	if (a->creds->expires_wall_ms && (a->refresh_timer = kr_timer_new(loop, refresh_due, a)))
		refresh_schedule(a);
	*out = a;
	return KR_OK;
}

void kr_aws_free(struct kr_aws *a)
{
	if (!a)
		return;
	refresh_abandon(a);
	kr_timer_free(a->refresh_timer);
	kr_http_free(a->http);
	creds_put(a->creds);
	creds_put(a->base);
	free(a->role_arn);
	free(a->external_id);
	free(a->session_name);
	free(a->region);
	free(a->endpoint);
	free(a->ca_file);
	free(a->process);
	free(a->from);
	free(a);
}

const char *kr_aws_region(const struct kr_aws *a)
{
	return a->region;
}

const char *kr_aws_endpoint(const struct kr_aws *a)
{
	return a->endpoint;
}

/* ---- errors ---- */

bool kr_aws_retryable_code(const char *code)
{
	static const char *const codes[] = {
		"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
		"TooManyRequestsException", "ProvisionedThroughputExceededException",
		"TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
		"RequestThrottled", "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException",
		"ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalError",
		"InternalServerError", "ServiceException", "RequestTimeout", "RequestTimeoutException",
		"ExpiredToken", "ExpiredTokenException", "RequestExpired", "IDPCommunicationError",
		"EC2UnexpectedException", "KMSInternalException", "ResourceConflictException",
		"AWS.SimpleQueueService.RequestThrottled", "KmsThrottlingException"};
	for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
		if (strcmp(code, codes[i]) == 0)
			return true;
	return strstr(code, "Throttl") != NULL;
}

/* Decodes XML text (the five entities and numeric references of ASCII characters) from [s, e)
 * into out. */
static void xml_decode(const char *s, const char *e, char *out, size_t cap)
{
	static const char *const ents[][2] = {
		{"&lt;", "<"}, {"&gt;", ">"}, {"&amp;", "&"}, {"&quot;", "\""}, {"&apos;", "'"}};
	size_t o = 0;
	while (s < e && o + 1 < cap) {
		bool done = false;
		for (size_t i = 0; i < 5 && *s == '&'; i++) {
			size_t n = strlen(ents[i][0]);
			if ((size_t)(e - s) >= n && memcmp(s, ents[i][0], n) == 0) {
				out[o++] = ents[i][1][0];
				s += n;
				done = true;
				break;
			}
		}
		if (!done && *s == '&' && e - s > 3 && s[1] == '#') {
			bool hex = s[2] == 'x';
			char *end;
			unsigned long v = strtoul(s + (hex ? 3 : 2), &end, hex ? 16 : 10);
			if (end < e && *end == ';' && v > 0 && v < 128) {
				out[o++] = (char)v;
				s = end + 1;
				done = true;
			}
		}
		if (!done)
			out[o++] = *s++;
	}
	out[o] = 0;
}

bool kr_aws_xml_next(const char **pos, const char *end, const char *tag, const char **content,
		     const char **content_end)
{
	char open[64], close[64];
	size_t tl = strnlen(tag, sizeof open - 3), no = tl + 2, nc = tl + 3;
	open[0] = close[0] = '<';
	close[1] = '/';
	memcpy(open + 1, tag, tl);
	memcpy(close + 2, tag, tl);
	open[no - 1] = close[nc - 1] = '>';
	const char *s = *pos;
	const char *a = s < end ? memmem(s, (size_t)(end - s), open, no) : NULL;
	if (!a)
		return false;
	a += no;
	const char *b = memmem(a, (size_t)(end - a), close, nc);
	if (!b)
		return false;
	*content = a;
	*content_end = b;
	*pos = b + nc;
	return true;
}

bool kr_aws_xml_text(const char *s, const char *e, const char *tag, char *out, size_t cap)
{
	const char *a, *b;
	if (!kr_aws_xml_next(&s, e, tag, &a, &b))
		return false;
	xml_decode(a, b, out, cap);
	return true;
}

static void one_line(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r' || *s == '\t')
			*s = ' ';
}

void kr_aws_error_of(const struct kr_http_response *r, struct kr_aws_result *out)
{
	out->code[0] = out->message[0] = 0;
	out->status = r->status;
	out->ok = r->status >= 200 && r->status < 300;
	out->not_before_ms = r->retry_after_ms >= 0 ? kr_wall_ms() + (uint64_t)r->retry_after_ms : 0;
	out->outcome = KR_DELIVERED;
	if (out->ok)
		return;
	if (r->status == 0) {
		snprintf(out->code, sizeof out->code, "%s", r->timed_out ? "Timeout" : "ConnectionError");
		snprintf(out->message, sizeof out->message, "%s", r->error ? r->error : "no response");
		out->outcome = KR_RETRYABLE;
		return;
	}
	char hv[256];
	const char *body = r->body ? r->body : "";
	struct kr_json *j = NULL;
	if (*body == '{' && kr_json_parse(body, r->body_len, &(struct kr_json_opts){.last_key_wins = true},
					  &j, NULL, NULL) == KR_OK &&
	    j->type == KR_JSON_OBJECT) {
		static const char *const code_keys[] = {"__type", "code", "Code"};
		static const char *const msg_keys[] = {"message", "Message", "errorMessage"};
		for (size_t i = 0; i < 3 && !out->code[0]; i++) {
			const struct kr_json *v = kr_json_get(j, code_keys[i]);
			if (v && v->type == KR_JSON_STRING) {
				const char *h = strrchr(v->str, '#');
				snprintf(out->code, sizeof out->code, "%s", h ? h + 1 : v->str);
			}
		}
		for (size_t i = 0; i < 3 && !out->message[0]; i++) {
			const struct kr_json *v = kr_json_get(j, msg_keys[i]);
			if (v && v->type == KR_JSON_STRING)
				snprintf(out->message, sizeof out->message, "%s", v->str);
		}
	}
	kr_json_free(j);
	if (kr_http_header(r, "x-amzn-query-error", hv, sizeof hv)) {
		/* "AWS.SimpleQueueService.NonExistentQueue;Sender": the query protocol's code */
		hv[strcspn(hv, ";")] = 0;
		if (*hv)
			snprintf(out->code, sizeof out->code, "%.*s", (int)sizeof out->code - 1, hv);
	}
	if (!out->code[0] && kr_http_header(r, "x-amzn-ErrorType", hv, sizeof hv)) {
		hv[strcspn(hv, ":")] = 0;
		snprintf(out->code, sizeof out->code, "%.*s", (int)sizeof out->code - 1, hv);
	}
	if (!out->code[0] && *body == '<')
		kr_aws_xml_text(body, body + r->body_len, "Code", out->code, sizeof out->code);
	if (!out->message[0] && *body == '<')
		kr_aws_xml_text(body, body + r->body_len, "Message", out->message,
				sizeof out->message);
	if (!out->code[0])
		snprintf(out->code, sizeof out->code, "HTTP%ld", r->status);
	if (!out->message[0])
		snprintf(out->message, sizeof out->message, "HTTP %ld: %.200s", r->status, body);
	one_line(out->message);
	bool retry = r->status >= 500 || r->status == 429 || kr_aws_retryable_code(out->code);
	out->outcome = retry ? KR_RETRYABLE : KR_PERMANENT;
}

/* Blots every occurrence of secret out of s. */
static void blot(char *s, const char *secret)
{
	size_t n = secret ? strlen(secret) : 0;
	if (n < 4)
		return;
	for (char *p = strstr(s, secret); p; p = strstr(p + 3, secret)) {
		memset(p, '*', 3);
		memmove(p + 3, p + n, strlen(p + n) + 1);
	}
}

/* ---- calls ---- */

static void call_free(struct call *c)
{
	for (size_t i = 0; i < c->nlines; i++)
		free(c->lines[i]);
	free(c->lines);
	creds_put(c->creds);
	free(c);
}

static void on_done(void *arg, const struct kr_http_response *r)
{
	struct call *c = arg;
	struct kr_aws_result res;
	kr_aws_error_of(r, &res);
	res.http = r;
	if (!res.ok) {
		blot(res.message, c->creds->secret);
		blot(res.message, c->creds->token);
		blot(res.code, c->creds->secret);
	}
	c->done(c->arg, &res);
	call_free(c);
}

static bool add_line(struct call *c, const char *fmt, const char *v)
{
	char **l = realloc(c->lines, (c->nlines + 2) * sizeof *l);
	if (!l)
		return false;
	c->lines = l;
	if (asprintf(&l[c->nlines], fmt, v) < 0)
		return false;
	l[++c->nlines] = NULL;
	return true;
}

enum kr_err kr_aws_send(struct kr_aws *a, const struct kr_aws_call *req, kr_aws_done_fn done,
			void *arg)
{
	refresh_creds(a);
	struct call *c = calloc(1, sizeof *c);
	if (!c)
		return KR_ERR_NOMEM;
	c->done = done;
	c->arg = arg;
	c->creds = a->creds;
	c->creds->refs++;
	bool ok = add_line(c, "Content-Type: %s",
			   req->content_type ? req->content_type : "application/x-amz-json-1.0");
	if (ok && req->target)
		ok = add_line(c, "X-Amz-Target: %s", req->target);
	for (size_t i = 0; ok && req->headers && req->headers[i]; i++)
		ok = add_line(c, "%s", req->headers[i]);
	char *url = NULL;
	if (ok && asprintf(&url, "%s%s", a->endpoint, req->path ? req->path : "/") < 0)
		url = NULL;
	if (!ok || !url) {
		free(url);
		call_free(c);
		return KR_ERR_NOMEM;
	}
	struct kr_http_request h = {
		.method = req->method ? req->method : "POST",
		.url = url,
		.headers = (const char *const *)c->lines,
		.body = req->body,
		.body_len = req->body_len,
		.timeout_ms = req->timeout_ms,
		.connect_timeout_ms = a->connect_timeout_ms,
		.max_body = req->max_body,
		.body_prefix = req->body_prefix,
		.auth = KR_HTTP_AUTH_SIGV4,
		.user = c->creds->akid,
		.password = c->creds->secret,
		.token = c->creds->token,
		.region = a->region,
		.service = a->svc.signing_name,
		.ca_file = a->ca_file,
	};
	enum kr_err e = kr_http_send(a->http, &h, on_done, c);
	free(url);
	if (e)
		call_free(c);
	return e;
}

/* ---- batches ---- */

struct batch_call {
	struct kr_batch *bt;
	struct kr_buf body;
	kr_aws_results_fn results;
	const char *what;
};

static void batch_done(void *arg, const struct kr_aws_result *r)
{
	struct batch_call *q = arg;
	struct kr_batch *bt = q->bt;
	if (!r->ok) {
		kr_batch_end(bt, r->outcome, r->not_before_ms, r->code, r->message);
	} else {
		q->results(bt, r->http);
		char msg[160];
		snprintf(msg, sizeof msg, "%s's answer did not say what became of this entry", q->what);
		kr_batch_end(bt, KR_RETRYABLE, 0, "NoResult", msg);
	}
	kr_buf_free(&q->body);
	free(q);
}

void kr_aws_send_batch(struct kr_aws *a, struct kr_batch *bt, const struct kr_aws_call *call,
		       struct kr_buf *body, kr_aws_results_fn results, const char *what)
{
	struct batch_call *q = calloc(1, sizeof *q);
	if (q) {
		q->bt = bt;
		q->body = *body;
		*body = (struct kr_buf){0};
		q->results = results;
		q->what = what;
		struct kr_aws_call c = *call;
		c.body = q->body.p;
		c.body_len = q->body.len;
		if (kr_aws_send(a, &c, batch_done, q) == KR_OK)
			return;
		kr_buf_free(&q->body);
		free(q);
	}
	kr_buf_free(body);
	kr_batch_end(bt, KR_RETRYABLE, 0, "ENOMEM", "cannot start the request");
}
