// What the claim page says for every answer: a screen per group of reasons, a line per
// reason, Chinese first with English. Every reason of gateway/reasons.py has a line
// (tests/h5/test_browser.py holds this table to the Python one).

// Screens: a title, and whether the claim is over for good (the button stays off).
export const SCREENS = {
  success: { zh: "领取成功", en: "Claimed!", final: true },
  sold_out: { zh: "已抢光", en: "Sold out", final: true },
  not_started: { zh: "还没开始", en: "Not started yet", final: false },
  ended: { zh: "活动已结束", en: "Ended", final: true },
  paused: { zh: "活动暂停中", en: "Paused", final: false },
  limit: { zh: "已达领取上限", en: "Limit reached", final: true },
  not_eligible: { zh: "不符合领取条件", en: "Not eligible", final: true },
  blocked: { zh: "无法领取", en: "Blocked", final: true },
  try_later: { zh: "请稍后再试", en: "Try again shortly", final: false },
  login: { zh: "请先登录", en: "Please log in", final: false },
  unknown: { zh: "活动不存在", en: "No such campaign", final: true },
  error: { zh: "出错了", en: "Something went wrong", final: false },
};

// Reasons: [screen, Chinese line, English line].
export const REASONS = {
  ACCEPTED: ["success", "券已放入您的账户", "The coupon is in your account"],
  SOLD_OUT: ["sold_out", "券已被抢光", "All coupons are gone"],
  DAILY_SOLD_OUT: ["sold_out", "今日券已抢光，明天再来", "Today's coupons are gone; come back tomorrow"],
  BUDGET_EXHAUSTED: ["sold_out", "活动预算已用完", "The campaign's budget is spent"],
  USER_LIMIT: ["limit", "您已领过这张券", "You already have this coupon"],
  USER_DAILY_LIMIT: ["limit", "今天已领过，明天再来", "You reached today's limit; come back tomorrow"],
  DEVICE_LIMIT: ["limit", "这台设备已达领取上限", "This device reached its limit"],
  EXCLUSIVE_CONFLICT: ["limit", "您持有一张与此券互斥的券", "You hold a coupon that excludes this one"],
  NOT_STARTED: ["not_started", "活动还没开始，请留意倒计时", "Not started yet; watch the countdown"],
  ENDED: ["ended", "活动已结束", "The campaign has ended"],
  PAUSED: ["paused", "活动暂停中，请稍后再来", "The campaign is paused; check back later"],
  NOT_ELIGIBLE: ["not_eligible", "此活动不面向您的账户或渠道", "This campaign is not open to your account or channel"],
  BLOCKED: ["blocked", "账户或设备受限，无法领取", "Claims from this account or device are blocked"],
  UNKNOWN_CAMPAIGN: ["unknown", "找不到这个活动", "This campaign does not exist"],
  NOT_FOUND: ["unknown", "找不到这个活动", "This campaign does not exist"],
  REQUEST_MISMATCH: ["error", "请再点一次", "Please tap again"],
  OVERLOADED: ["try_later", "人太多了，请稍后再试", "Too busy right now; try again shortly"],
  UNAVAILABLE: ["try_later", "服务繁忙，请稍后再试", "Unavailable right now; try again shortly"],
  RATE_LIMITED: ["try_later", "点得太快了，请稍后再试", "Too many taps; try again shortly"],
  INVALID_REQUEST: ["error", "请求有误，请刷新页面后重试", "The request was not valid; reload and try again"],
  UNAUTHORIZED: ["login", "请在 App 中登录后再领取", "Log in in the app, then claim"],
  METHOD_NOT_ALLOWED: ["error", "请求有误，请刷新页面后重试", "The request was not valid; reload and try again"],
  HEADERS_TOO_LARGE: ["login", "登录信息有误，请重新登录", "Your login is not valid; log in again"],
  CLIENT_CLOSED: ["try_later", "网络不稳定，请稍后再试", "Network trouble; try again shortly"],
  ORIGIN_NOT_ALLOWED: ["error", "请在官方活动页领取", "Claim on the official campaign page"],
  // Using a coupon (checkout pages; a claim never answers these): the words for each.
  COUPON_NOT_FOUND: ["error", "找不到这张券", "You hold no such coupon"],
  COUPON_LOCKED: ["error", "这张券正被另一笔订单使用", "The coupon is held by another order"],
  COUPON_USED: ["error", "这张券已使用", "The coupon was already used"],
  COUPON_EXPIRED: ["error", "这张券已过期", "The coupon has expired"],
  COUPON_VOIDED: ["error", "这张券已作废", "The coupon was voided"],
  NOT_APPLICABLE: ["error", "这张券不适用于本订单", "The coupon does not apply to this order"],
  NOT_STACKABLE: ["error", "这些券不能同时使用", "These coupons cannot be used together"],
  ORDER_MISMATCH: ["error", "订单信息有变，请重新下单", "The order changed; place it again"],
  ORDER_NOT_FOUND: ["error", "找不到这笔订单的用券记录", "No coupon is locked to this order"],
  ORDER_STATE: ["error", "订单当前状态不支持此操作", "The order's state does not allow this"],
  LOCK_EXPIRED: ["error", "支付超时，券已退回，请重新下单", "Payment timed out; the coupon is back, order again"],
  REFUND_TOO_LARGE: ["error", "退款金额超过可退金额", "The refund is more than what is left to refund"],
  REFUND_MISMATCH: ["error", "退款信息有误", "This refund was already made with another amount"],
  DEVICE_NOT_VERIFIED: ["error", "此券仅限在领券的认证设备上使用", "Use this coupon on the verified device you claimed it on"],
  CHANNEL_SOLD_OUT: ["sold_out", "本渠道的券已抢光", "This channel's coupons are gone"],
  DAILY_BUDGET_EXHAUSTED: ["sold_out", "今日活动预算已用完，明天再来", "Today's budget is spent; come back tomorrow"],
  USER_MONEY_LIMIT: ["limit", "您领取的券金额已达上限", "You reached the most coupon value allowed"],
  INTERNAL: ["try_later", "服务出了点问题，请稍后再试", "Something went wrong on our side; try again shortly"],
  CODE_INVALID: ["error", "兑换码无效或已被使用", "This code is not valid or was already used"],
  CODE_MISTYPED: ["error", "兑换码有误，请检查后重新输入", "Not a code: check it for a typo"],
  CODE_LOCKED: ["try_later", "输错次数过多，请稍后再试", "Too many wrong codes; try again later"],
  // Shopping credit (gateway/credit/): shown where a page tops up or pays with credit
  INSUFFICIENT_CREDIT: ["error", "购物金余额不足", "Not enough shopping credit"],
  UNKNOWN_CREDIT_PLAN: ["unknown", "找不到这个充值方案", "This credit plan does not exist"],
  UNKNOWN_TOPUP: ["unknown", "找不到这笔充值", "This top-up does not exist"],
  PAYMENT_MISMATCH: ["error", "支付信息与充值单不符", "The payment does not match the top-up"],
  UNKNOWN_CREDIT_HOLD: ["unknown", "该订单未使用购物金", "No credit is held for this order"],
  CREDIT_HOLD_CLOSED: ["error", "该订单的购物金已处理", "This order's credit was already settled"],
  WITHDRAWAL_NOT_ALLOWED: ["not_eligible", "该充值方案不支持提现", "This credit plan does not allow withdrawals"],
  TOPUP_OUT_OF_RANGE: ["error", "充值金额不在方案范围内", "The amount is outside what this plan takes"],
  CREDIT_PLAN_INACTIVE: ["ended", "该充值方案已关闭", "This credit plan is closed"],
  CREDIT_NOT_APPLICABLE: ["not_eligible", "购物金不能支付这么多（券后、限品类）", "Credit cannot pay that much of this order"],
  // the client's own: no answer came back, or one that was not the gateway's
  NETWORK_ERROR: ["try_later", "网络不稳定，请稍后再试", "Network trouble; try again shortly"],
  HTTP_ERROR: ["try_later", "服务繁忙，请稍后再试", "Unavailable right now; try again shortly"],
};

// The public endpoint's statuses that stop a claim before it is made.
export const STATUS_REASONS = { sold_out: "SOLD_OUT", ended: "ENDED", paused: "PAUSED" };

/** [screen name, screen, Chinese line, English line] for a reason (unknown ones: try later). */
export function describe(reason) {
  const [name, zh, en] = REASONS[reason] || REASONS.HTTP_ERROR;
  return [name, SCREENS[name], zh, en];
}
