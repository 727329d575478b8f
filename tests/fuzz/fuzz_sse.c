/* fuzz-sources: runtime/provider/sse.c runtime/base/buf.c */
/*
 * fuzz_sse.c -- libFuzzer target for the Server-Sent Events parser.
 *
 * Input layout: byte 0 picks the event size bound (small bounds reach the
 * AD_ETOOBIG path often), byte 1 picks a split point; the rest is the
 * stream. The stream is parsed twice, once in one piece and once in two
 * pieces split at that point, and the two runs must report the same events
 * (a digest of event names and data) and the same result: the parser's
 * output may not depend on how the network cut the bytes. Each event's
 * strings must be NUL-terminated and within the bound. Built by mk/fuzz.mk.
 */
#include "provider/sse.h"

#include <stdint.h>
#include <string.h>

#include "base/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ENSURE(x)                                                                                  \
    do {                                                                                           \
        if (!(x))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

typedef struct run {
    uint64_t digest;
    size_t events;
    size_t max;
} run;

static uint64_t mix(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return (h ^ n) * 1099511628211ull;
}

static int on_event(void *ud, const char *event, size_t event_len, const char *data,
                    size_t data_len)
{
    run *r = ud;
    ENSURE(event[event_len] == '\0' && data[data_len] == '\0');
    ENSURE(strlen(event) <= event_len);
    ENSURE(data_len <= r->max && event_len <= r->max);
    r->digest = mix(mix(r->digest, event, event_len), data, data_len);
    r->events++;
    /* Stop on a data payload "stop" to exercise the callback's stop path. */
    return data_len == 4 && memcmp(data, "stop", 4) == 0 ? 7 : 0;
}

static int parse(const char *s, size_t n, size_t split, size_t max, run *r)
{
    ad_sse *p = ad_sse_new(max, on_event, r);
    if (!p)
        return AD_ENOMEM;
    int rc = ad_sse_feed(p, s, split);
    if (rc == 0)
        rc = ad_sse_feed(p, s + split, n - split);
    if (rc == 0)
        rc = ad_sse_finish(p);
    if (rc == 0)
        ENSURE(ad_sse_bytes(p) == n);
    /* A reset parser must be usable again and forget everything. */
    ad_sse_reset(p);
    ENSURE(ad_sse_bytes(p) == 0);
    int again = ad_sse_feed(p, "data: x\n\n", 9);
    ENSURE(again == 0 || (again == AD_ETOOBIG && r->max < 8));
    ad_sse_free(p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const size_t bounds[] = {1, 2, 8, 64, 4096, 0};
    size_t max = bounds[data[0] % 6];
    const char *s = (const char *)data + 2;
    size_t n = size - 2;
    size_t split = n ? data[1] % (n + 1) : 0;
    run a = {14695981039346656037ull, 0, max ? max : (size_t)16 << 20};
    run b = a;
    int ra = parse(s, n, n, max, &a);
    int rb = parse(s, n, split, max, &b);
    ENSURE(ra == rb);
    ENSURE(a.events == b.events && a.digest == b.digest);
    return 0;
}
