/* kr_reader: reads one input (a file, or "-" for standard input) into a kr_stream, a chunk at a
 * time, so a caller on an event loop can bound the work per step.
 *
 * Gzip is recognised by its magic bytes whatever the name (several gzip members one after another
 * are read as one stream, as gzip -d does). Input is read with read() into the stream's buffer,
 * so memory stays bounded whatever the input size. A reader at the end of a growing file can be
 * stepped again later (follow mode) and reports when the file was replaced or truncated. Used
 * from one thread. */
#ifndef KR_INPUT_H
#define KR_INPUT_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "stream.h"

struct kr_reader;

enum kr_read {
	KR_READ_MORE,   /* read a chunk; call again */
	KR_READ_EOF,    /* nothing more for now (the end of a regular file, or of stdin) */
	KR_READ_ERROR,  /* see the error buffer */
	KR_READ_WAIT    /* only for a reader opened nonblocking: a pipe, socket or terminal has
			   nothing to read yet; wait until kr_reader_fd is readable, then step
			   again */
};

/* Opens path ("-": stdin) for reading into s (which it resets). Returns a new reader in *out;
 * free with kr_reader_close. nonblocking: for a caller on an event loop, which must not stop in
 * an open or a read while a writer is quiet: a named FIFO is opened without waiting for its
 * writer, and a step that would wait for a pipe, socket or terminal gives KR_READ_WAIT instead
 * (standard input's flags are shared with other processes and stay as they are: such a step
 * polls it first). */
enum kr_err kr_reader_open(const char *path, struct kr_stream *s, bool nonblocking,
			   struct kr_reader **out, char *err);

/* Reads (and for gzip inflates) one chunk into the stream and parses it. A read from a pipe,
 * socket or terminal waits for its writer, unless the reader was opened nonblocking. */
enum kr_read kr_reader_step(struct kr_reader *r, char *err);

/* The descriptor the reader reads. */
int kr_reader_fd(const struct kr_reader *r);

/* Bytes consumed from the file so far (compressed bytes for gzip) and the file's size now. */
uint64_t kr_reader_offset(const struct kr_reader *r);
int64_t kr_reader_size(const struct kr_reader *r);

/* For follow mode at EOF: true when path now names another file (rotated) or the file shrank
 * (truncated), so the caller should finish this reader and open the path again. */
bool kr_reader_replaced(const struct kr_reader *r);

/* Ends the stream (reporting a truncated last record) and closes the file. */
enum kr_err kr_reader_finish(struct kr_reader *r);
void kr_reader_close(struct kr_reader *r);

/* Reads all of path through s: open, step until EOF, finish. KR_ERR_IO with the reason in err
 * when the input cannot be opened or read or its gzip data is corrupt (records before that point
 * were delivered); other errors as returned by the stream. */
enum kr_err kr_input_read(struct kr_stream *s, const char *path, char *err);

#endif
