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
    "conference_enter_pin": {
        "en": "Please enter the conference PIN, then press the hash key.",
        "vi": "Vui lòng nhập mã PIN của phòng họp, sau đó bấm phím thăng.",
        "zh": "请输入会议密码，并以井号键结束。",
    },
    "conference_wrong_pin": {
        "en": "That PIN is not valid.",
        "vi": "Mã PIN vừa nhập không hợp lệ.",
        "zh": "您输入的密码无效。",
    },
    "conference_pin_locked": {
        "en": "Too many wrong PINs. Conferences are locked on this phone for a while.",
        "vi": "Quý khách đã nhập sai mã PIN quá nhiều lần. Máy này tạm thời không vào được phòng họp.",
        "zh": "密码错误次数过多，本话机暂时无法加入会议。",
    },
    "conference_full": {
        "en": "This conference is full. Please try again later.",
        "vi": "Phòng họp đã đủ người. Vui lòng gọi lại sau.",
        "zh": "会议人数已满，请稍后再拨。",
    },
    "conference_locked": {
        "en": "The conference is locked.",
        "vi": "Phòng họp đã khóa.",
        "zh": "会议已锁定。",
    },
    "conference_unlocked": {
        "en": "The conference is unlocked.",
        "vi": "Phòng họp đã mở khóa.",
        "zh": "会议已解锁。",
    },
    "conference_muted": {
        "en": "You are muted.",
        "vi": "Đã tắt tiếng của quý vị.",
        "zh": "您已静音。",
    },
    "conference_unmuted": {
        "en": "You are no longer muted.",
        "vi": "Đã bật lại tiếng của quý vị.",
        "zh": "您已取消静音。",
    },
    "conference_moderator_only": {
        "en": "Only the moderator can do that.",
        "vi": "Chỉ người chủ trì mới dùng được chức năng này.",
        "zh": "只有主持人可以执行此操作。",
    },
    "conference_dropped": {
        "en": "The last participant has been removed.",
        "vi": "Người vào sau cùng đã bị mời ra.",
        "zh": "最后加入的参会者已被移出。",
    },
    "conference_nobody_to_drop": {
        "en": "There is nobody to remove.",
        "vi": "Không có ai để mời ra.",
        "zh": "没有可移出的参会者。",
    },
    "call_parked": {
        "en": "Your call is parked at",
        "vi": "Cuộc gọi đã được giữ tại số",
        "zh": "通话已停泊在",
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

# Voicemail (pbx.voicemail): what a caller hears before leaving a message
# ("The person at extension" 2 0 0 2, the name, "is not available ..."),
# and the owner's mailbox menu (*97, *98). Numbers are said digit by digit.
PHRASES.update({
    "vm_person_at_extension": {
        "en": "The person at extension",
        "vi": "Người dùng máy lẻ số",
        "zh": "分机",
    },
    "vm_is_not_available": {
        "en": "is not available. Please leave a message after the tone, then press the hash key or hang up.",
        "vi": "hiện không thể trả lời. Vui lòng để lại lời nhắn sau tiếng bíp, rồi bấm phím thăng hoặc gác máy.",
        "zh": "的用户暂时无法接听。请在提示音后留言，结束请按井号键或挂机。",
    },
    "vm_enter_mailbox": {
        "en": "Please enter your mailbox number, then press the hash key.",
        "vi": "Vui lòng nhập số hộp thư, sau đó bấm phím thăng.",
        "zh": "请输入您的信箱号码，并以井号键结束。",
    },
    "vm_enter_pin": {
        "en": "Please enter your PIN, then press the hash key.",
        "vi": "Vui lòng nhập mã PIN, sau đó bấm phím thăng.",
        "zh": "请输入您的密码，并以井号键结束。",
    },
    "vm_wrong_pin": {
        "en": "That PIN is not valid.",
        "vi": "Mã PIN không đúng.",
        "zh": "密码不正确。",
    },
    "vm_locked": {
        "en": "This mailbox is locked after too many wrong PINs. Please try again later.",
        "vi": "Hộp thư đã bị khóa do nhập sai mã PIN quá nhiều lần. Vui lòng thử lại sau.",
        "zh": "密码错误次数过多，信箱已被锁定。请稍后再试。",
    },
    "vm_you_have": {"en": "You have", "vi": "Quý vị có", "zh": "您有"},
    "vm_new_messages": {"en": "new messages", "vi": "tin nhắn mới", "zh": "条新留言"},
    "vm_and": {"en": "and", "vi": "và", "zh": "和"},
    "vm_saved_messages": {"en": "saved messages.", "vi": "tin nhắn đã lưu.", "zh": "条已保存的留言。"},
    "vm_main_menu": {
        "en": "To listen to your messages, press 1. For mailbox options, press 0. To hang up, press star.",
        "vi": "Để nghe tin nhắn, bấm phím 1. Để cài đặt hộp thư, bấm phím 0. Để kết thúc, bấm phím sao.",
        "zh": "收听留言请按1，信箱设置请按0，挂机请按星号键。",
    },
    "vm_new_message": {"en": "New message.", "vi": "Tin nhắn mới.", "zh": "新留言。"},
    "vm_saved_message": {"en": "Saved message.", "vi": "Tin nhắn đã lưu.", "zh": "已保存的留言。"},
    "vm_message_menu": {
        "en": "Press 4 to replay, 5 to call back, 6 for the next message, 7 to delete, 9 to save, or star for"
              " the menu.",
        "vi": "Nghe lại, bấm 4. Gọi lại, bấm 5. Tin nhắn tiếp theo, bấm 6. Xóa, bấm 7. Lưu, bấm 9. "
              "Về menu chính, bấm phím sao.",
        "zh": "重听按4，回拨按5，下一条按6，删除按7，保存按9，主菜单按星号键。",
    },
    "vm_no_more_messages": {"en": "There are no more messages.", "vi": "Không còn tin nhắn nào.",
                            "zh": "没有更多留言。"},
    "vm_message_deleted": {"en": "Message deleted.", "vi": "Đã xóa tin nhắn.", "zh": "留言已删除。"},
    "vm_message_saved": {"en": "Message saved.", "vi": "Đã lưu tin nhắn.", "zh": "留言已保存。"},
    "vm_options_menu": {
        "en": "To record your greeting, press 1. To change your PIN, press 2. For the main menu, press star.",
        "vi": "Để ghi âm lời chào, bấm phím 1. Để đổi mã PIN, bấm phím 2. Về menu chính, bấm phím sao.",
        "zh": "录制问候语请按1，修改密码请按2，返回主菜单请按星号键。",
    },
    "vm_record_greeting": {
        "en": "After the tone, say your greeting, then press the hash key.",
        "vi": "Sau tiếng bíp, hãy đọc lời chào, rồi bấm phím thăng.",
        "zh": "请在提示音后录制问候语，结束请按井号键。",
    },
    "vm_greeting_saved": {"en": "Your greeting is saved.", "vi": "Đã lưu lời chào.", "zh": "问候语已保存。"},
    "vm_new_pin": {
        "en": "Please enter your new PIN, then press the hash key.",
        "vi": "Vui lòng nhập mã PIN mới, sau đó bấm phím thăng.",
        "zh": "请输入新密码，并以井号键结束。",
    },
    "vm_repeat_pin": {
        "en": "Please enter the new PIN again, then press the hash key.",
        "vi": "Vui lòng nhập lại mã PIN mới, sau đó bấm phím thăng.",
        "zh": "请再次输入新密码，并以井号键结束。",
    },
    "vm_pin_changed": {"en": "Your PIN is changed.", "vi": "Đã đổi mã PIN.", "zh": "密码已修改。"},
    "vm_pin_rejected": {
        "en": "That PIN cannot be used. The two entries must match, and a PIN needs at least four different digits.",
        "vi": "Không thể dùng mã PIN này. Hai lần nhập phải giống nhau, và mã PIN cần ít nhất bốn chữ số.",
        "zh": "该密码无法使用。两次输入必须一致，且密码至少为四位数字。",
    },
})

_VI_DIGITS: Final = ("không", *_VI_NUMBERS)
_ZH_DIGITS: Final = "零" + _ZH_NUMBERS
_EN_DIGITS: Final = ("zero", *_EN_NUMBERS)

# One digit each, to say counts and extension numbers digit by digit.
for _n in range(10):
    PHRASES[f"digit_{_n}"] = {"en": _EN_DIGITS[_n], "vi": _VI_DIGITS[_n], "zh": _ZH_DIGITS[_n]}
