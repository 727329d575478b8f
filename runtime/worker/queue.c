/*
 * queue.c -- key names and Lua scripts of the job queue (see queue.h).
 *
 * Each script starts with the same few local functions (LUA_COMMON):
 * owns() is the lease check, close_job() ends a job (its last event, its
 * stream entry acknowledged and deleted, its session's next job queued,
 * its keys kept for keep_s seconds).
 */
#include "worker/queue.h"

#include <stdio.h>
#include <string.h>

#define LUA_COMMON                                                                                 \
    "local function owns(stream, group, entry, me)\n"                                              \
    "  local pe = redis.call('XPENDING', stream, group, entry, entry, 1)\n"                        \
    "  return #pe > 0 and pe[1][2] == me\n"                                                        \
    "end\n"                                                                                        \
    "local function ended(st)\n"                                                                   \
    "  return st == 'done' or st == 'failed' or st == 'dead'\n"                                    \
    "end\n"                                                                                        \
    "local function retire(stream, group, entry)\n"                                                \
    "  redis.call('XACK', stream, group, entry)\n"                                                 \
    "  redis.call('XDEL', stream, entry)\n"                                                        \
    "end\n"                                                                                        \
    "local function close_job(prefix, stream, group, entry, job, event, keep)\n"                   \
    "  local id = redis.call('HGET', job, 'id')\n"                                                 \
    "  redis.call('XADD', job .. ':events', '*', 'e', event)\n"                                    \
    "  retire(stream, group, entry)\n"                                                             \
    "  local sess = redis.call('HGET', job, 'session')\n"                                          \
    "  if sess and sess ~= '' then\n"                                                              \
    "    local a = prefix .. ':session:' .. sess .. ':active'\n"                                   \
    "    local nxt = redis.call('LPOP', prefix .. ':session:' .. sess .. ':queue')\n"              \
    "    if nxt then\n"                                                                            \
    "      redis.call('SET', a, nxt)\n"                                                            \
    "      local e = redis.call('XADD', stream, '*', 'job', nxt)\n"                                \
    "      redis.call('HSET', prefix .. ':job:' .. nxt, 'entry', e, 'state', 'queued')\n"          \
    "    elseif redis.call('GET', a) == id then\n"                                                 \
    "      redis.call('DEL', a)\n"                                                                 \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  keep = tonumber(keep)\n"                                                                    \
    "  if keep and keep > 0 then\n"                                                                \
    "    redis.call('EXPIRE', job, keep)\n"                                                        \
    "    redis.call('EXPIRE', job .. ':events', keep)\n"                                           \
    "    redis.call('EXPIRE', job .. ':ledger', keep)\n"                                           \
    "    if not sess or sess == '' then redis.call('EXPIRE', job .. ':conv', keep) end\n"          \
    "  end\n"                                                                                      \
    "end\n"

/* KEYS: stream, job, index. ARGV: prefix, id, prompt, session, now_ms.
 * -> {queued, entry} | {waiting, active job} | {exists, state} |
 *    {conflict, state} (the id is taken by another prompt or session) */
static ad_redis_script s_submit = {
    "submit",
    LUA_COMMON
    "local j = redis.call('HMGET', KEYS[2], 'prompt', 'session', 'state')\n"
    "if j[3] then\n"
    "  if j[1] ~= ARGV[3] or j[2] ~= ARGV[4] then return {'conflict', j[3]} end\n"
    "  return {'exists', j[3]}\n"
    "end\n"
    "local conv = KEYS[2] .. ':conv'\n"
    "if ARGV[4] ~= '' then conv = ARGV[1] .. ':session:' .. ARGV[4] end\n"
    "redis.call('HSET', KEYS[2], 'id', ARGV[2], 'prompt', ARGV[3], 'session', ARGV[4],\n"
    "           'conv', conv, 'submitted', ARGV[5], 'attempts', 0, 'handbacks', 0,\n"
    "           'seq', 0, 'state', 'queued')\n"
    "redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])\n"
    "if ARGV[4] ~= '' then\n"
    "  local a = ARGV[1] .. ':session:' .. ARGV[4] .. ':active'\n"
    "  local cur = redis.call('GET', a)\n"
    "  if cur and cur ~= ARGV[2] then\n"
    "    local cst = redis.call('HGET', ARGV[1] .. ':job:' .. cur, 'state')\n"
    "    if cst and not ended(cst) then\n"
    "      redis.call('RPUSH', ARGV[1] .. ':session:' .. ARGV[4] .. ':queue', ARGV[2])\n"
    "      redis.call('HSET', KEYS[2], 'state', 'waiting')\n"
    "      return {'waiting', cur}\n"
    "    end\n"
    "  end\n"
    "  redis.call('SET', a, ARGV[2])\n"
    "end\n"
    "local e = redis.call('XADD', KEYS[1], '*', 'job', ARGV[2])\n"
    "redis.call('HSET', KEYS[2], 'entry', e)\n"
    "return {'queued', e}\n",
    ""};

/* KEYS: stream, job, dead. ARGV: prefix, group, me, entry, now_ms,
 * max_deliveries, keep_s.
 * -> {run, attempt, base, prompt, session, conv key, {messages...}} |
 *    {dead, reason} | {stale, state} | {gone} | {lost} */
static ad_redis_script s_begin = {
    "begin",
    LUA_COMMON
    "if not owns(KEYS[1], ARGV[2], ARGV[4], ARGV[3]) then return {'lost'} end\n"
    "local j = redis.call('HMGET', KEYS[2], 'state', 'entry', 'attempts', 'handbacks', 'owner',\n"
    "                     'conv', 'base', 'prompt', 'session', 'seq', 'id')\n"
    "if not j[1] then retire(KEYS[1], ARGV[2], ARGV[4]); return {'gone'} end\n"
    "if ended(j[1]) or j[2] ~= ARGV[4] then\n"
    "  retire(KEYS[1], ARGV[2], ARGV[4]); return {'stale', j[1]}\n"
    "end\n"
    "local attempts = tonumber(j[3]) or 0\n"
    "local fails = attempts - (tonumber(j[4]) or 0)\n"
    "if fails >= tonumber(ARGV[6]) then\n"
    "  local reason = 'started ' .. fails .. ' times without finishing (max_deliveries ' ..\n"
    "    ARGV[6] .. '): the last attempt (' .. attempts .. ', worker ' .. (j[5] or '?') ..\n"
    "    ') stopped renewing its lease'\n"
    "  local seq = (tonumber(j[10]) or 0) + 1\n"
    "  redis.call('HSET', KEYS[2], 'state', 'dead', 'reason', reason, 'finished', ARGV[5],\n"
    "             'seq', seq)\n"
    "  redis.call('XADD', KEYS[3], '*', 'job', j[11], 'reason', reason)\n"
    "  close_job(ARGV[1], KEYS[1], ARGV[2], ARGV[4], KEYS[2], cjson.encode({type='job_end',\n"
    "    state='dead', reason=reason, attempt=attempts, seq=seq}), ARGV[7])\n"
    "  return {'dead', reason}\n"
    "end\n"
    "attempts = attempts + 1\n"
    "local base = j[7]\n"
    "if not base then\n"
    "  base = tostring(redis.call('LLEN', j[6]))\n"
    "  redis.call('HSET', KEYS[2], 'base', base)\n"
    "end\n"
    "redis.call('HSET', KEYS[2], 'state', 'running', 'owner', ARGV[3], 'attempt', attempts,\n"
    "           'attempts', attempts, 'seq', 0, 'started', ARGV[5])\n"
    "return {'run', tostring(attempts), base, j[8], j[9], j[6], redis.call('LRANGE', j[6], 0, -1)}\n",
    ""};

/* KEYS: stream. ARGV: group, me, entry... -> {1|0 per entry}: 1 renewed
 * (XCLAIM JUSTID resets the idle time without counting a delivery), 0 not
 * ours any more. */
static ad_redis_script s_heartbeat = {
    "heartbeat",
    LUA_COMMON
    "local out = {}\n"
    "for i = 3, #ARGV do\n"
    "  if owns(KEYS[1], ARGV[1], ARGV[i], ARGV[2]) then\n"
    "    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')\n"
    "    out[#out + 1] = 1\n"
    "  else\n"
    "    out[#out + 1] = 0\n"
    "  end\n"
    "end\n"
    "return out\n",
    ""};

/* KEYS: stream, job. ARGV: group, me, entry, attempt, first seq, event...
 * Events whose seq the job has already are skipped (a batch sent twice).
 * -> ok | lost */
static ad_redis_script s_events = {
    "events",
    LUA_COMMON
    "if not owns(KEYS[1], ARGV[1], ARGV[3], ARGV[2]) or\n"
    "   redis.call('HGET', KEYS[2], 'attempt') ~= ARGV[4] then return 'lost' end\n"
    "local last = tonumber(redis.call('HGET', KEYS[2], 'seq')) or 0\n"
    "local s = tonumber(ARGV[5])\n"
    "for i = 6, #ARGV do\n"
    "  if s > last then\n"
    "    redis.call('XADD', KEYS[2] .. ':events', '*', 'e', ARGV[i])\n"
    "    last = s\n"
    "  end\n"
    "  s = s + 1\n"
    "end\n"
    "redis.call('HSET', KEYS[2], 'seq', last)\n"
    "return 'ok'\n",
    ""};

/* KEYS: stream, job. ARGV: group, me, entry, attempt, expected length,
 * message, ledger field... Appends the message when the conversation has
 * the expected length, and marks each tool call of it started in the
 * ledger (HSETNX). -> {ok, length} | {conflict, length} | {lost} */
static ad_redis_script s_append = {
    "append",
    LUA_COMMON
    "if not owns(KEYS[1], ARGV[1], ARGV[3], ARGV[2]) or\n"
    "   redis.call('HGET', KEYS[2], 'attempt') ~= ARGV[4] then return {'lost'} end\n"
    "local conv = redis.call('HGET', KEYS[2], 'conv')\n"
    "local n = redis.call('LLEN', conv)\n"
    "local exp = tonumber(ARGV[5])\n"
    "if n == exp + 1 and redis.call('LINDEX', conv, -1) == ARGV[6] then return {'ok', n} end\n"
    "if n ~= exp then return {'conflict', n} end\n"
    "redis.call('RPUSH', conv, ARGV[6])\n"
    "if #ARGV >= 7 then\n"
    "  local v = cjson.encode({state='started', attempt=tonumber(ARGV[4]), worker=ARGV[2]})\n"
    "  for i = 7, #ARGV do redis.call('HSETNX', KEYS[2] .. ':ledger', ARGV[i], v) end\n"
    "end\n"
    "return {'ok', n + 1}\n",
    ""};

/* KEYS: stream, job. ARGV: group, me, entry, attempt, field, value, mode
 * ('nx': only when the field is not there). -> {ok, 1|0 written} | {lost} */
static ad_redis_script s_ledger = {
    "ledger",
    LUA_COMMON
    "if not owns(KEYS[1], ARGV[1], ARGV[3], ARGV[2]) or\n"
    "   redis.call('HGET', KEYS[2], 'attempt') ~= ARGV[4] then return {'lost'} end\n"
    "if ARGV[7] == 'nx' then\n"
    "  return {'ok', redis.call('HSETNX', KEYS[2] .. ':ledger', ARGV[5], ARGV[6])}\n"
    "end\n"
    "redis.call('HSET', KEYS[2] .. ':ledger', ARGV[5], ARGV[6])\n"
    "return {'ok', 1}\n",
    ""};

/* KEYS: stream, job. ARGV: prefix, group, me, entry, attempt, state,
 * status, result, error, now_ms, keep_s, seq of the job_end event.
 * -> ok (also when this very attempt finished it already) | lost */
static ad_redis_script s_finish = {
    "finish",
    LUA_COMMON
    "local j = redis.call('HMGET', KEYS[2], 'state', 'ended_by', 'attempt')\n"
    "local tag = ARGV[3] .. '/' .. ARGV[5]\n"
    "if ended(j[1]) then\n"
    "  if j[2] == tag then return 'ok' end\n"
    "  return 'lost'\n"
    "end\n"
    "if not j[1] or j[3] ~= ARGV[5] or not owns(KEYS[1], ARGV[2], ARGV[4], ARGV[3]) then\n"
    "  return 'lost'\n"
    "end\n"
    "redis.call('HSET', KEYS[2], 'state', ARGV[6], 'status', ARGV[7], 'result', ARGV[8],\n"
    "           'error', ARGV[9], 'finished', ARGV[10], 'ended_by', tag, 'seq', ARGV[12])\n"
    "local ev = {type='job_end', state=ARGV[6], status=tonumber(ARGV[7]),\n"
    "            attempt=tonumber(ARGV[5]), seq=tonumber(ARGV[12])}\n"
    "if ARGV[9] ~= '' then ev.error = ARGV[9] end\n"
    "close_job(ARGV[1], KEYS[1], ARGV[2], ARGV[4], KEYS[2], cjson.encode(ev), ARGV[11])\n"
    "return 'ok'\n",
    ""};

/* KEYS: stream, job. ARGV: group, me, entry, attempt ('' when it was not
 * begun), seq, reason. Puts the job back on the stream as a new entry at
 * once (a worker that stops hands its jobs on). -> ok | lost */
static ad_redis_script s_handback = {
    "handback",
    LUA_COMMON
    "if not owns(KEYS[1], ARGV[1], ARGV[3], ARGV[2]) then return 'lost' end\n"
    "local j = redis.call('HMGET', KEYS[2], 'state', 'entry', 'attempt', 'id')\n"
    "if not j[1] or ended(j[1]) or j[2] ~= ARGV[3] then\n"
    "  retire(KEYS[1], ARGV[1], ARGV[3]); return 'ok'\n"
    "end\n"
    "if ARGV[4] ~= '' then\n"
    "  if j[3] ~= ARGV[4] then return 'lost' end\n"
    "  redis.call('HINCRBY', KEYS[2], 'handbacks', 1)\n"
    "  redis.call('HSET', KEYS[2], 'seq', ARGV[5])\n"
    "  redis.call('XADD', KEYS[2] .. ':events', '*', 'e', cjson.encode({type='job_handback',\n"
    "    reason=ARGV[6], attempt=tonumber(ARGV[4]), seq=tonumber(ARGV[5])}))\n"
    "end\n"
    "retire(KEYS[1], ARGV[1], ARGV[3])\n"
    "local e = redis.call('XADD', KEYS[1], '*', 'job', j[4])\n"
    "redis.call('HSET', KEYS[2], 'entry', e, 'state', 'queued', 'owner', '')\n"
    "return 'ok'\n",
    ""};

/* KEYS: stream. ARGV: group, idle_ms, me. Removes the consumers (workers
 * that died) that own nothing and were idle longer than idle_ms; in one
 * script, so none of them can be given an entry in between. -> count */
static ad_redis_script s_cleanup = {
    "cleanup",
    "local n = 0\n"
    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do\n"
    "  local f = {}\n"
    "  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end\n"
    "  if f['pending'] == 0 and f['idle'] > tonumber(ARGV[2]) and f['name'] ~= ARGV[3] then\n"
    "    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n",
    ""};

ad_redis_script *const ad_q_scripts[AD_Q_NSCRIPTS] = {
    [AD_Q_SUBMIT] = &s_submit,     [AD_Q_BEGIN] = &s_begin,   [AD_Q_HEARTBEAT] = &s_heartbeat,
    [AD_Q_EVENTS] = &s_events,     [AD_Q_APPEND] = &s_append, [AD_Q_LEDGER] = &s_ledger,
    [AD_Q_FINISH] = &s_finish,     [AD_Q_HANDBACK] = &s_handback,
    [AD_Q_CLEANUP] = &s_cleanup,
};

static bool valid(const char *s, size_t max, bool colon)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || (colon && c == ':');
        if (!ok)
            return false;
    }
    return true;
}

bool ad_q_valid_id(const char *id)
{
    return valid(id, 128, false);
}

bool ad_q_valid_prefix(const char *p)
{
    return valid(p, 64, true);
}

const char *ad_q_stream(char *buf, const char *prefix)
{
    snprintf(buf, AD_Q_KEY_MAX, "%s:jobs", prefix);
    return buf;
}

const char *ad_q_dead(char *buf, const char *prefix)
{
    snprintf(buf, AD_Q_KEY_MAX, "%s:dead", prefix);
    return buf;
}

const char *ad_q_index(char *buf, const char *prefix)
{
    snprintf(buf, AD_Q_KEY_MAX, "%s:index", prefix);
    return buf;
}

const char *ad_q_job(char *buf, const char *prefix, const char *id)
{
    snprintf(buf, AD_Q_KEY_MAX, "%s:job:%s", prefix, id);
    return buf;
}

const char *ad_q_events(char *buf, const char *prefix, const char *id)
{
    snprintf(buf, AD_Q_KEY_MAX, "%s:job:%s:events", prefix, id);
    return buf;
}

const char *ad_q_ledger(char *buf, const char *prefix, const char *id)
{
    snprintf(buf, AD_Q_KEY_MAX, "%s:job:%s:ledger", prefix, id);
    return buf;
}

bool ad_q_state_ended(const char *state)
{
    return state && (strcmp(state, "done") == 0 || strcmp(state, "failed") == 0 ||
                     strcmp(state, "dead") == 0);
}
