/*
 * wire.c -- frames between agentd and its plugin workers (see wire.h).
 */
#include "tools/wire.h"

#include <string.h>

int ad_wire_begin(ad_buf *b, int type, uint64_t id)
{
    char h[AD_WIRE_HDR] = {0};
    uint16_t t = (uint16_t)type;
    memcpy(h + 4, &t, 2);
    memcpy(h + 8, &id, 8);
    ad_buf_reset(b);
    return ad_buf_append(b, h, sizeof h);
}

int ad_wire_u8(ad_buf *b, unsigned v)
{
    char c = (char)(unsigned char)v;
    return ad_buf_append(b, &c, 1);
}

int ad_wire_u64(ad_buf *b, uint64_t v)
{
    return ad_buf_append(b, (const char *)&v, 8);
}

int ad_wire_f64(ad_buf *b, double v)
{
    return ad_buf_append(b, (const char *)&v, 8);
}

int ad_wire_str(ad_buf *b, const char *s, size_t n)
{
    if (n > UINT32_MAX)
        return AD_ETOOBIG;
    uint32_t l = (uint32_t)n;
    if (ad_buf_append(b, (const char *)&l, 4) != 0)
        return AD_ENOMEM;
    return n ? ad_buf_append(b, s, n) : 0;
}

void ad_wire_end(ad_buf *b)
{
    uint32_t len = (uint32_t)(b->len - AD_WIRE_HDR);
    memcpy(b->data, &len, 4);
}

bool ad_wire_header(const char *data, size_t max, int *type, uint64_t *id, size_t *len)
{
    uint32_t l;
    uint16_t t, z;
    memcpy(&l, data, 4);
    memcpy(&t, data + 4, 2);
    memcpy(&z, data + 6, 2);
    memcpy(id, data + 8, 8);
    *type = t;
    *len = l;
    return z == 0 && t >= AD_WIRE_INIT && t <= AD_WIRE_PROGRESS && l <= max;
}

static const char *take(ad_wire_frame *f, size_t n)
{
    if (f->bad || (size_t)(f->end - f->p) < n) {
        f->bad = true;
        return NULL;
    }
    const char *s = f->p;
    f->p += n;
    return s;
}

unsigned ad_wire_get_u8(ad_wire_frame *f)
{
    const char *s = take(f, 1);
    return s ? (unsigned char)*s : 0;
}

uint64_t ad_wire_get_u64(ad_wire_frame *f)
{
    uint64_t v = 0;
    const char *s = take(f, 8);
    if (s)
        memcpy(&v, s, 8);
    return v;
}

double ad_wire_get_f64(ad_wire_frame *f)
{
    double v = 0;
    const char *s = take(f, 8);
    if (s)
        memcpy(&v, s, 8);
    return v;
}

const char *ad_wire_get_str(ad_wire_frame *f, size_t *n)
{
    uint32_t l = 0;
    const char *s = take(f, 4);
    if (s)
        memcpy(&l, s, 4);
    *n = 0;
    if (s == NULL)
        return NULL;
    const char *d = take(f, l);
    if (d)
        *n = l;
    return d ? d : NULL;
}
