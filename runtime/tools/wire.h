/*
 * wire.h -- the frames between agentd and its persistent plugin workers
 * (tools/worker.c on the host's side, tools/serve.c in the worker).
 *
 * A frame is a 16-byte header, then `len` bytes of payload:
 *   u32 len, u16 type, u16 zero, u64 id     (native byte order: both ends
 *                                            are this same program)
 * The two directions go over two socket pairs (see AD_WIRE_CTL_FD).
 * `id` names a call (0: none). Payloads are sequences of fields: u8, u64,
 * f64, and strings (u32 length, then the bytes). Types and payloads:
 *   host -> worker
 *     INIT      path, has_config u8, config, result_max u64
 *     CALL      (id) tool, call_id, conv_id, timeout_s f64, args
 *     CANCEL    (id)
 *   worker -> host
 *     HELLO     ok u8, text: the description {"tools":[...]} or the error
 *     RESULT    (id) is_error u8, content
 *     LOG       (id or 0) level u8, text
 *     PROGRESS  (id) done f64, total f64, has_msg u8, msg
 * The reader trusts nothing: a frame whose length passes the bound, whose
 * type is unknown, or whose payload does not hold its fields is a protocol
 * error.
 */
#ifndef AD_TOOLS_WIRE_H
#define AD_TOOLS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

#define AD_WIRE_HDR 16

enum {
    AD_WIRE_INIT = 1,
    AD_WIRE_HELLO,
    AD_WIRE_CALL,
    AD_WIRE_CANCEL,
    AD_WIRE_RESULT,
    AD_WIRE_LOG,
    AD_WIRE_PROGRESS,
};

/* Starts a frame in b (reset first): the header with len 0. */
int ad_wire_begin(ad_buf *b, int type, uint64_t id);
int ad_wire_u8(ad_buf *b, unsigned v);
int ad_wire_u64(ad_buf *b, uint64_t v);
int ad_wire_f64(ad_buf *b, double v);
int ad_wire_str(ad_buf *b, const char *s, size_t n);
/* Writes the payload's length into the header. */
void ad_wire_end(ad_buf *b);

typedef struct ad_wire_frame {
    int type;
    uint64_t id;
    const char *p, *end; /* the payload not yet read */
    bool bad;            /* a field was missing */
} ad_wire_frame;

/* Parses the header at data (n >= AD_WIRE_HDR bytes): the payload length in
 * *len; returns false when the type is unknown or len > max. */
bool ad_wire_header(const char *data, size_t max, int *type, uint64_t *id, size_t *len);
unsigned ad_wire_get_u8(ad_wire_frame *f);
uint64_t ad_wire_get_u64(ad_wire_frame *f);
double ad_wire_get_f64(ad_wire_frame *f);
/* A string field: borrowed from the payload, *n bytes (not NUL-terminated). */
const char *ad_wire_get_str(ad_wire_frame *f, size_t *n);

/* A worker's last words: a page of shared memory (a memfd the host made,
 * the worker's fd 4) where the worker notes, from its fatal-signal handler
 * or its atexit handler, which call's thread raised the signal or called
 * exit(), or that its channel was closed under it (plain stores: safe in a
 * signal handler; nothing to interleave with frames). The host reads it
 * once the worker is gone. */
typedef struct ad_wire_last {
    uint32_t magic; /* AD_WIRE_LAST_MAGIC once written */
    uint32_t kind;  /* AD_WIRE_LAST_* */
    int32_t sig;    /* the signal */
    uint32_t pad;
    uint64_t call;  /* the call's id; 0: none (init, or a thread of the plugin's own) */
} ad_wire_last;
#define AD_WIRE_LAST_MAGIC 0x4c617374u
/* CHANNEL: a read or write of the frames found the descriptor closed (a
 * plugin closed the worker's descriptors); the worker ended itself. */
enum { AD_WIRE_LAST_SIGNAL = 1, AD_WIRE_LAST_EXIT = 2, AD_WIRE_LAST_CHANNEL = 3 };
#define AD_WIRE_CTL_FD 3  /* a worker's end of the socket pair of calls (host -> worker) */
#define AD_WIRE_LAST_FD 4 /* a worker's last-words page */
#define AD_WIRE_UP_FD 5   /* a worker's end of the socket pair of its frames (worker -> host) */

#endif /* AD_TOOLS_WIRE_H */
