/* The floor under an AWS sink's CPU: libcurl alone sending requests that kmsrouter sent, with
 * nothing of the router's work (no events read, matched or prepared, no bodies built, no
 * signing): bench/sinks.sh replays each sink's requests through it and compares the two.
 *
 *   curl_peer BASE-URL FILE CONCURRENCY
 *
 * FILE holds requests one after another, each as a line with its path, a line with its number
 * of header lines, those lines, a line with its body's length, and the body. They are POSTed to
 * BASE-URL and the path in order, up to CONCURRENCY at a time, on reused handles and kept-alive
 * connections (curl multi, as the router uses it), without "Expect: 100-continue" (as the
 * router). Prints "requests N answered A not-2xx F"; exit 1 when a request could not be sent,
 * 2 on a usage or file error. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct request {
	char *url;
	struct curl_slist *headers;
	char *body;
	long len;
};

static size_t discard(char *d, size_t size, size_t n, void *arg)
{
	(void)d;
	(void)arg;
	return size * n;
}

static int read_requests(FILE *f, const char *base, struct request **out, size_t *n)
{
	size_t cap = 0;
	char line[16384];
	*out = NULL;
	*n = 0;
	while (fgets(line, sizeof line, f)) {
		struct request r = {0};
		line[strcspn(line, "\r\n")] = 0;
		r.url = malloc(strlen(base) + strlen(line) + 1);
		if (!r.url)
			return -1;
		strcat(strcpy(r.url, base), line);
		r.headers = curl_slist_append(NULL, "Expect:");
		if (!fgets(line, sizeof line, f))
			return -1;
		int nh = atoi(line);
		for (int i = 0; i < nh; i++) {
			if (!fgets(line, sizeof line, f))
				return -1;
			line[strcspn(line, "\r\n")] = 0;
			r.headers = curl_slist_append(r.headers, line);
		}
		if (!fgets(line, sizeof line, f))
			return -1;
		r.len = atol(line);
		r.body = malloc((size_t)r.len + 1);
		if (!r.body || fread(r.body, 1, (size_t)r.len, f) != (size_t)r.len)
			return -1;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			struct request *g = realloc(*out, cap * sizeof *g);
			if (!g)
				return -1;
			*out = g;
		}
		(*out)[(*n)++] = r;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: curl_peer BASE-URL FILE CONCURRENCY\n");
		return 2;
	}
	FILE *f = fopen(argv[2], "rb");
	struct request *reqs;
	size_t n;
	if (!f || read_requests(f, argv[1], &reqs, &n) != 0) {
		fprintf(stderr, "curl_peer: cannot read %s\n", argv[2]);
		return 2;
	}
	fclose(f);
	long conc = atol(argv[3]);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	CURLM *m = curl_multi_init();
	CURL **pool = calloc((size_t)conc, sizeof *pool);
	size_t npool = 0, started = 0, done = 0, not2xx = 0, failed = 0;
	int running;
	while (done < n) {
		while (started < n && started - done < (size_t)conc) {
			CURL *e = npool ? pool[--npool] : curl_easy_init();
			curl_easy_reset(e);
			curl_easy_setopt(e, CURLOPT_URL, reqs[started].url);
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, reqs[started].body);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, reqs[started].len);
			curl_easy_setopt(e, CURLOPT_HTTPHEADER, reqs[started].headers);
			curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
			curl_easy_setopt(e, CURLOPT_TIMEOUT, 120L);
			curl_multi_add_handle(m, e);
			started++;
		}
		curl_multi_perform(m, &running);
		CURLMsg *msg;
		int left;
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			long code = 0;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
			if (msg->data.result != CURLE_OK)
				failed++;
			else if (code < 200 || code > 299)
				not2xx++;
			curl_multi_remove_handle(m, msg->easy_handle);
			pool[npool++] = msg->easy_handle;
			done++;
		}
		if (done < n)
			curl_multi_poll(m, NULL, 0, 1000, NULL);
	}
	printf("requests %zu answered %zu not-2xx %zu\n", n, n - failed, not2xx);
	return failed ? 1 : 0;
}
