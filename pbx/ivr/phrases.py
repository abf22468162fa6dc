"""Every phrase the PBX says, in each language it ships prompts for.

The keys are the prompt names the call layer and the dialplan use; the
texts are what ``make_prompts.py`` has espeak-ng speak. An admin's own
recording replaces any of them (:mod:`pbx.ivr.prompts`). The welcome
greeting matches the example dialplan's auto attendant (1: sales on
extension 1002, 0: reception 1099).
"""

from __future__ import annotations

from typing import Final

LANGUAGES: Final = ("vi", "zh", "en")

VOICES: Final = {"vi": "vi", "zh": "cmn", "en": "en-us"}
"""espeak-ng voice per language (cmn: Mandarin)."""

PHRASES: Final[dict[str, dict[str, str]]] = {
    "forwarding_on": {
        "en": "Call forwarding is on.",
        "vi": "Đã bật chuyển cuộc gọi.",
        "zh": "呼叫转移已开启。",
    },
    "forwarding_off": {
        "en": "Call forwarding is off.",
        "vi": "Đã tắt chuyển cuộc gọi.",
        "zh": "呼叫转移已关闭。",
    },
    "dnd_on": {
        "en": "Do not disturb is on.",
        "vi": "Đã bật chế độ không làm phiền.",
        "zh": "免打扰已开启。",
    },
    "dnd_off": {
        "en": "Do not disturb is off.",
        "vi": "Đã tắt chế độ không làm phiền.",
        "zh": "免打扰已关闭。",
    },
    "welcome": {
        "en": "Welcome. For sales, press 1. For reception, press 0. Or dial an extension number.",
        "vi": "Xin chào quý khách. Gặp phòng kinh doanh, bấm phím 1. Gặp lễ tân, bấm phím 0. "
              "Hoặc bấm số máy lẻ.",
        "zh": "您好，欢迎致电。销售部请按1，总机请按0，或直接拨分机号码。",
    },
    "closed": {
        "en": "Thank you for calling. Our office is closed. Please call again during business hours.",
        "vi": "Cảm ơn quý khách đã gọi. Văn phòng hiện đã hết giờ làm việc. "
              "Vui lòng gọi lại trong giờ hành chính.",
        "zh": "感谢您的来电。现在是非办公时间，请在办公时间内再拨。",
    },
    "enter_account_code": {
        "en": "Please enter your account code, then press the hash key.",
        "vi": "Vui lòng nhập mã tài khoản, sau đó bấm phím thăng.",
        "zh": "请输入您的帐户代码，并以井号键结束。",
    },
    "invalid_code": {
        "en": "That code is not valid.",
        "vi": "Mã vừa nhập không hợp lệ.",
        "zh": "您输入的代码无效。",
    },
    "code_locked": {
        "en": "Too many wrong codes. Account codes are locked on this phone for a while.",
        "vi": "Quý khách đã nhập sai mã quá nhiều lần. Máy này tạm thời bị khóa mã tài khoản.",
        "zh": "错误次数过多，本话机暂时无法使用帐户代码。",
    },
    "not_allowed": {
        "en": "You are not allowed to call this number.",
        "vi": "Quý khách không được phép gọi số này.",
        "zh": "您无权拨打此号码。",
    },
    "budget_exhausted": {
        "en": "The calling budget for this period is used up. This call cannot be placed.",
        "vi": "Ngân sách cuộc gọi của kỳ này đã hết. Không thể thực hiện cuộc gọi này.",
        "zh": "本期通话预算已用完，无法拨打此电话。",
    },
    "call_recorded": {
        "en": "This call is recorded.",
        "vi": "Cuộc gọi này được ghi âm.",
        "zh": "本次通话将被录音。",
    },
    "busy": {
        "en": "The number you called is busy. Please try again later.",
        "vi": "Số máy quý khách vừa gọi đang bận. Vui lòng gọi lại sau.",
        "zh": "您拨打的电话正在通话中，请稍后再拨。",
    },
    "not_available": {
        "en": "The person you called is not available.",
        "vi": "Số máy quý khách vừa gọi hiện không liên lạc được.",
        "zh": "您拨打的用户暂时无法接通。",
    },
    "number_does_not_exist": {
        "en": "The number you dialled does not exist.",
        "vi": "Số máy quý khách vừa gọi không tồn tại.",
        "zh": "您拨打的号码不存在。",
    },
    "invalid_option": {
        "en": "That is not a valid option.",
        "vi": "Lựa chọn không hợp lệ.",
        "zh": "您的选择无效。",
    },
    "goodbye": {
        "en": "Goodbye.",
        "vi": "Xin cảm ơn và hẹn gặp lại.",
        "zh": "再见。",
    },
    "please_hold": {
        "en": "Please hold while we connect your call.",
        "vi": "Vui lòng giữ máy trong giây lát.",
        "zh": "请稍候，正在为您转接。",
    },
    "logged_in": {
        "en": "You are logged in to the hunt group.",
        "vi": "Quý vị đã đăng nhập vào nhóm trực.",
        "zh": "您已登录话务组。",
    },
    "logged_out": {
        "en": "You are logged out of the hunt group.",
        "vi": "Quý vị đã đăng xuất khỏi nhóm trực.",
        "zh": "您已退出话务组。",
    },
    "queue_position_many": {
        "en": "There are many callers ahead of you.",
        "vi": "Có nhiều cuộc gọi đang chờ trước quý khách.",
        "zh": "您前面还有多位来电者。",
    },
}

_VI_NUMBERS: Final = ("một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")
_ZH_NUMBERS: Final = "一二三四五六七八九"
_EN_NUMBERS: Final = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# "You are number N in the queue", N from 1 to 9 (pbx.calls.hunt_queue):
# whole sentences, so each language keeps its own word order.
for _n in range(1, 10):
    PHRASES[f"queue_position_{_n}"] = {
        "en": f"You are number {_EN_NUMBERS[_n - 1]} in the queue.",
        "vi": f"Quý khách đang ở vị trí số {_VI_NUMBERS[_n - 1]} trong hàng chờ.",
        "zh": f"您现在排在第{_ZH_NUMBERS[_n - 1]}位。",
    }
