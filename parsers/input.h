/* kr_input: feeds one input (a file, or "-" for standard input) through a kr_stream.
 *
 * Gzip is recognised by its magic bytes whatever the name (several gzip members one after another
 * are read as one stream, as gzip -d does). Input is read in chunks into the stream's buffer,
 * so memory stays bounded whatever the input size. Used from one thread. */
#ifndef KR_INPUT_H
#define KR_INPUT_H

#include "err.h"
#include "stream.h"

/* Resets s, reads all of path through it and ends it. KR_ERR_IO with the reason in err when the
 * input cannot be opened or read or its gzip data is corrupt (records before that point were
 * delivered); other errors as returned by the stream. */
enum kr_err kr_input_read(struct kr_stream *s, const char *path, char *err);

#endif
