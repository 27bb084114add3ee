#!lua
--[[
  claim.lua: decide a batch of claims for one campaign, atomically.

  Every claim is checked against every rule first; only a claim that passes them all
  writes, and it writes everything at once: counters, limits, holdings, the replay
  record and its outbox entry. A refused claim writes nothing. Claims of one batch are
  decided in order, each seeing the writes of those before it. Counters only grow, so
  none can go below zero; stock left is cfg.stock - counters.issued. Expiries are relative
  (PEXPIRE, EX) to the time passed in, so a moved clock never expires a key early.

  A claim's requestId is bound here, scoped to the campaign: the replay record an
  accepted claim writes (KEYS[12+i]) answers a retry by the same user and device with the
  same coupon, and a reuse by another user or device with REQUEST_MISMATCH. A refused
  claim binds nothing, so its requestId is decided afresh next time.

  Input:
    KEYS[1]  cfg          hash   the published campaign (see gateway/campaign.py)
    KEYS[2]  counters     hash   issued, spent, moved (a stock shard's borrowed - lent)
    KEYS[3]  users        hash   user -> claimed in total
    KEYS[4]  devices      hash   device -> claimed in total
    KEYS[5]  blocked      set    u:<user>, d:<device>
    KEYS[6]  holds        hash   user -> <campaign>:<expires ms> (exclusion group)
    KEYS[7]  outbox       stream accepted claims for the relay (ClaimEvent.from_outbox),
                          with the claimant's newUser, level and tags (user layers, stats)
    KEYS[8]  daily        string issued today (campaign time zone)
    KEYS[9]  users_daily  hash   user -> claimed today
    KEYS[10] winners      list   requestIds of accepted claims, in order (see ARGV[6])
    KEYS[11] user_money   hash   user -> cents of coupon value claimed in total
    KEYS[12] daily_money  string cents of coupon value issued today
    KEYS[12+i]            string replay record of claim i's requestId
    KEYS[12+n+i]          hash   claim i user's recent claims, couponId -> RecentClaim
    ARGV[1]  now, epoch ms
    ARGV[2]  end of today in the campaign's zone, epoch ms
    ARGV[3]  replay record TTL, seconds
    ARGV[4]  outbox length at which claims are shed
    ARGV[5]  n, claims in this batch
    ARGV[6]  winners cap: accepted requestIds are appended to KEYS[10] while the stock is
             at most this (0: never); the list is complete while its length equals issued,
             and lets workers answer a sold-out herd from memory
    then per claim i (8 each, from ARGV[7 + 8*(i-1)]):
             user, device, requestId, couponId, newUser (0|1), level, tags (",a,b,"), channel

  Output: { { {code, couponId, expiresAtMs, replayed(0|1)} per claim }, outboxLength, issued, stock }
    code: 0 ACCEPTED, 1 SOLD_OUT, 2 DAILY_SOLD_OUT, 3 BUDGET_EXHAUSTED, 4 USER_LIMIT,
          5 USER_DAILY_LIMIT, 6 DEVICE_LIMIT, 7 NOT_STARTED, 8 ENDED, 9 PAUSED,
          10 NOT_ELIGIBLE, 11 EXCLUSIVE_CONFLICT, 12 BLOCKED, 13 UNKNOWN_CAMPAIGN,
          14 REQUEST_MISMATCH, 15 OVERLOADED, 16 UNAVAILABLE, 17 CODE_INVALID,
          55 CHANNEL_SOLD_OUT, 56 DAILY_BUDGET_EXHAUSTED, 57 USER_MONEY_LIMIT
    Claim rules (gateway/rules/): cfg.quotas ",<channel>=<n>,..." caps what each channel may
    issue of the one stock (counted in counters "ch:<channel>"); cfg.ucap caps the value a
    user claims in total, cfg.dbudget the value issued per day (0: no cap).
    A malformed call is refused with an error before anything is written.

  Redeem codes (gateway/channels/redeem.py), a separate addition at the end of the contract:
    KEYS[12+2n+1] codes    hash   keyed hash of a code -> "" unused, "<user>\t<requestId>" used
    ARGV[last n]          claim i's code hash ("" for a claim without a code)
  Both are present, or neither. A claim with a code is refused CODE_INVALID (17) unless the
  code is in the hash and unused; accepted, it marks the code used in the same step.
  Every outbox entry carries field `code`: the code's hash, "" for a claim without one
  (the coupon row keeps it, and `flashclaim recover` rebuilds the used marks from it).
]]

local ACCEPTED, SOLD_OUT, DAILY_SOLD_OUT, BUDGET_EXHAUSTED = 0, 1, 2, 3
local USER_LIMIT, USER_DAILY_LIMIT, DEVICE_LIMIT = 4, 5, 6
local NOT_STARTED, ENDED, PAUSED, NOT_ELIGIBLE = 7, 8, 9, 10
local EXCLUSIVE_CONFLICT, BLOCKED, UNKNOWN_CAMPAIGN = 11, 12, 13
local REQUEST_MISMATCH, OVERLOADED, UNAVAILABLE = 14, 15, 16
local CODE_INVALID = 17
local CHANNEL_SOLD_OUT, DAILY_BUDGET_EXHAUSTED, USER_MONEY_LIMIT = 55, 56, 57

local DAY_MS = 86400000
local FIRST, STRIDE, FIXED_KEYS = 7, 8, 12

local now, day_end = tonumber(ARGV[1]), tonumber(ARGV[2])
local replay_ttl, outbox_max, n = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local winners_max = tonumber(ARGV[6])
-- Redeem codes: one more key and n more values when the batch carries codes.
local codes_key = n and #KEYS == FIXED_KEYS + 2 * n + 1 and KEYS[FIXED_KEYS + 2 * n + 1] or nil
local extra_keys, extra_args = 0, 0
if codes_key then extra_keys, extra_args = 1, n end
if not (now and day_end and replay_ttl and outbox_max and n and winners_max) or n < 1
    or #KEYS ~= FIXED_KEYS + 2 * n + extra_keys
    or #ARGV ~= FIRST - 1 + n * STRIDE + extra_args then
  return redis.error_reply('ERR claim.lua: malformed call')
end
for i = 1, n do
  local at = FIRST + (i - 1) * STRIDE
  if ARGV[at] == '' or ARGV[at + 2] == '' or ARGV[at + 3] == ''
      or not tonumber(ARGV[at + 5]) then
    return redis.error_reply('ERR claim.lua: malformed claim ' .. i)
  end
end

local cfg = redis.call('HMGET', KEYS[1], 'status', 'start', 'end', 'stock', 'dstock', 'budget',
  'value', 'ulimit', 'udlimit', 'dlimit', 'newonly', 'minlevel', 'tags', 'channels', 'group',
  'vmode', 'vuntil', 'vdays', 'cid', 'quotas', 'ucap', 'dbudget')
local status = cfg[1]
local stock, dstock, budget = tonumber(cfg[4]) or 0, tonumber(cfg[5]) or 0, tonumber(cfg[6]) or 0
local value, ulimit = tonumber(cfg[7]) or 0, tonumber(cfg[8]) or 0
local udlimit, dlimit = tonumber(cfg[9]) or 0, tonumber(cfg[10]) or 0
local newonly, minlevel = cfg[11], tonumber(cfg[12]) or 0
local ctags, channels, group = cfg[13] or '', cfg[14] or '', cfg[15] or ''
local vmode, vuntil, vdays, cid = cfg[16], tonumber(cfg[17]) or 0, tonumber(cfg[18]) or 0, cfg[19]

-- What every claim of this batch would hear about the campaign itself.
local campaign_code = nil
if not status or status == 'draft' then
  campaign_code = UNKNOWN_CAMPAIGN
elseif status == 'paused' then
  campaign_code = PAUSED
elseif status == 'recovering' then
  campaign_code = UNAVAILABLE
elseif status ~= 'active' then
  campaign_code = UNKNOWN_CAMPAIGN
elseif now < (tonumber(cfg[2]) or 0) then
  campaign_code = NOT_STARTED
elseif now >= (tonumber(cfg[3]) or 0) then
  campaign_code = ENDED
end

local counts = redis.call('HMGET', KEYS[2], 'issued', 'spent', 'moved')
local issued, spent = tonumber(counts[1]) or 0, tonumber(counts[2]) or 0
-- A hot campaign's stock shard (gateway/shards/): cfg.stock is the shard's share, moved
-- the stock borrowed in (+) or lent out (-) since; 0 for a campaign of one shard.
stock = stock + (tonumber(counts[3]) or 0)
local today = tonumber(redis.call('GET', KEYS[8])) or 0
local outbox_len = redis.call('XLEN', KEYS[7])

local function listed(csv, item)
  return string.find(csv, ',' .. item .. ',', 1, true) ~= nil
end

local function eligible(new_user, level, tags, channel)
  if channels ~= '' and not listed(channels, channel) then return false end
  if newonly == '1' and new_user ~= '1' then return false end
  if level < minlevel then return false end
  if ctags == '' then return true end
  for tag in string.gmatch(ctags, '[^,]+') do
    if listed(tags, tag) then return true end
  end
  return false
end

local function held_elsewhere(user)
  if group == '' then return false end
  local hold = redis.call('HGET', KEYS[6], user)
  if not hold then return false end
  local held_cid, expires = string.match(hold, '^(.*):(%d+)$')
  return held_cid ~= cid and tonumber(expires) > now
end

local function count(key, field)
  return tonumber(redis.call('HGET', key, field)) or 0
end

-- Claim rules (gateway/rules/): channel quotas of the one stock, a per-user money cap and a
-- per-day money budget; checked after the budget, written with the claim.
local quotas, ucap, dbudget = cfg[20] or '', tonumber(cfg[21]) or 0, tonumber(cfg[22]) or 0
local day_money = dbudget > 0 and (tonumber(redis.call('GET', KEYS[12])) or 0) or 0
local by_channel = {}

local function quota_of(channel)
  local at = quotas ~= '' and string.find(quotas, ',' .. channel .. '=', 1, true)
  if not at then return nil end
  return tonumber(string.match(quotas, '^%d+', at + #channel + 2))
end

local function channel_issued(channel)
  if by_channel[channel] == nil then by_channel[channel] = count(KEYS[2], 'ch:' .. channel) end
  return by_channel[channel]
end

local function rule_refusal(user, channel)
  local quota = quota_of(channel)
  if quota and channel_issued(channel) >= quota then return CHANNEL_SOLD_OUT end
  if dbudget > 0 and day_money + value > dbudget then return DAILY_BUDGET_EXHAUSTED end
  if ucap > 0 and count(KEYS[11], user) + value > ucap then return USER_MONEY_LIMIT end
  return nil
end

local function rule_writes(user, channel)
  if quotas ~= '' then
    by_channel[channel] = channel_issued(channel) + 1
    redis.call('HINCRBY', KEYS[2], 'ch:' .. channel, 1)
  end
  if dbudget > 0 then
    day_money = day_money + value
    if redis.call('INCRBY', KEYS[12], value) == value then
      redis.call('PEXPIRE', KEYS[12], day_end - now + 2 * DAY_MS)
    end
  end
  if ucap > 0 then redis.call('HINCRBY', KEYS[11], user, value) end
end

-- The rules, in the order their reasons are reported.
local function decide(user, device, new_user, level, tags, channel)
  if campaign_code then return campaign_code end
  if redis.call('SISMEMBER', KEYS[5], 'u:' .. user) == 1
      or redis.call('SISMEMBER', KEYS[5], 'd:' .. device) == 1 then
    return BLOCKED
  end
  if not eligible(new_user, level, tags, channel) then return NOT_ELIGIBLE end
  if held_elsewhere(user) then return EXCLUSIVE_CONFLICT end
  if count(KEYS[3], user) >= ulimit then return USER_LIMIT end
  if udlimit > 0 and count(KEYS[9], user) >= udlimit then return USER_DAILY_LIMIT end
  if dlimit > 0 and count(KEYS[4], device) >= dlimit then return DEVICE_LIMIT end
  if issued >= stock then return SOLD_OUT end
  if dstock > 0 and today >= dstock then return DAILY_SOLD_OUT end
  if budget > 0 and spent + value > budget then return BUDGET_EXHAUSTED end
  local rule = rule_refusal(user, channel)
  if rule then return rule end
  if outbox_len >= outbox_max then return OVERLOADED end
  return ACCEPTED
end

local function expiry()
  if vmode == 'days' then return now + vdays * DAY_MS end
  if vmode == 'eod' then return day_end end
  return vuntil
end

local function accept(user, device, rid, coupon, channel, req_key, redeem, at)
  local expires = expiry()
  issued, spent, today = issued + 1, spent + value, today + 1
  redis.call('HINCRBY', KEYS[2], 'issued', 1)
  redis.call('HINCRBY', KEYS[2], 'spent', value)
  if redis.call('INCR', KEYS[8]) == 1 then
    redis.call('PEXPIRE', KEYS[8], day_end - now + 2 * DAY_MS)
  end
  redis.call('HINCRBY', KEYS[3], user, 1)
  if udlimit > 0 and redis.call('HINCRBY', KEYS[9], user, 1) == 1 then
    redis.call('PEXPIRE', KEYS[9], day_end - now + 2 * DAY_MS)
  end
  if dlimit > 0 then redis.call('HINCRBY', KEYS[4], device, 1) end
  if group ~= '' then redis.call('HSET', KEYS[6], user, cid .. ':' .. expires) end
  rule_writes(user, channel)
  redis.call('SET', req_key, user .. '\t' .. device .. '\t' .. coupon .. '\t' .. expires,
    'EX', replay_ttl)
  if stock <= winners_max then redis.call('RPUSH', KEYS[10], rid) end
  redis.call('XADD', KEYS[7], '*', 'coupon', coupon, 'campaign', cid, 'user', user,
    'device', device, 'request', rid, 'channel', channel, 'value', value,
    'at', now, 'expires', expires, 'code', redeem,
    'new', ARGV[at + 4], 'level', ARGV[at + 5], 'tags', ARGV[at + 6])  -- user layer (stats)
  outbox_len = outbox_len + 1
  return expires
end

-- Redemption: the user's recent claims (KEYS[12+n+i]), read by the wallet and the lock
-- until the claim's row reaches PostgreSQL (gateway/redemption/recent.py).
local function remember(key, coupon, device, rid, channel, expires)
  redis.call('HSET', key, coupon, device .. '\t' .. rid .. '\t' .. channel .. '\t' .. value
    .. '\t' .. now .. '\t' .. expires)
  redis.call('EXPIRE', key, replay_ttl)
end

local results = {}
for i = 1, n do
  local at = FIRST + (i - 1) * STRIDE
  local user, device, rid, coupon = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3]
  local req_key = KEYS[FIXED_KEYS + i]
  local record = redis.call('GET', req_key)
  if record then
    local r_user, r_device, r_coupon, r_expires = string.match(record, '^(.*)\t(.*)\t(.*)\t(%d+)$')
    if r_user == user and r_device == device then
      results[i] = { ACCEPTED, r_coupon, tonumber(r_expires), 1 }
    else
      results[i] = { REQUEST_MISMATCH, '', 0, 0 }
    end
  else
    local redeem = codes_key and ARGV[FIRST - 1 + n * STRIDE + i] or ''
    local code
    if redeem ~= '' and redis.call('HGET', codes_key, redeem) ~= '' then
      code = CODE_INVALID  -- never issued (false) or used: the same answer
    else
      code = decide(user, device, ARGV[at + 4], tonumber(ARGV[at + 5]), ARGV[at + 6],
        ARGV[at + 7])
    end
    if code == ACCEPTED then
      results[i] = { ACCEPTED, coupon, accept(user, device, rid, coupon, ARGV[at + 7], req_key,
        redeem, at), 0 }
      remember(KEYS[FIXED_KEYS + n + i], coupon, device, rid, ARGV[at + 7], results[i][3])
      if redeem ~= '' then redis.call('HSET', codes_key, redeem, user .. '\t' .. rid) end
    else
      results[i] = { code, '', 0, 0 }
    end
  end
end

return { results, outbox_len, issued, stock }
