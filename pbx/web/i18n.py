"""The console's words in English, Vietnamese and Chinese.

The language is the one picked with the switcher in this browser (the
``lang`` cookie), else the user's own setting, else the browser's
Accept-Language, else English. A key missing from a language falls back
to English (and a test checks none is missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

LANGUAGES: Final = ("en", "vi", "zh")

TEXT: Final[Mapping[str, tuple[str, str, str]]] = {
    # key: (English, Tiếng Việt, 中文)
    "app_title": ("PBX console", "Bảng điều khiển tổng đài", "总机管理台"),
    "login": ("Log in", "Đăng nhập", "登录"),
    "logout": ("Log out", "Đăng xuất", "退出"),
    "username": ("Username", "Tên đăng nhập", "用户名"),
    "password": ("Password", "Mật khẩu", "密码"),
    "login_failed": ("Wrong username or password.", "Sai tên đăng nhập hoặc mật khẩu.", "用户名或密码错误。"),
    "login_blocked": ("Too many failed log-ins: try again later.", "Đăng nhập sai quá nhiều lần: hãy thử lại sau.",
                      "登录失败次数过多，请稍后再试。"),
    "account": ("My account", "Tài khoản của tôi", "我的账户"),
    "change_password": ("Change password", "Đổi mật khẩu", "修改密码"),
    "current_password": ("Current password", "Mật khẩu hiện tại", "当前密码"),
    "new_password": ("New password (10 characters or more)", "Mật khẩu mới (từ 10 ký tự)", "新密码（至少10个字符）"),
    "repeat_password": ("New password again", "Nhập lại mật khẩu mới", "再次输入新密码"),
    "password_changed": ("Password changed; your other sessions have ended.",
                         "Đã đổi mật khẩu; các phiên đăng nhập khác đã kết thúc.", "密码已修改，其他登录会话已结束。"),
    "password_wrong": ("The current password is wrong.", "Mật khẩu hiện tại không đúng.", "当前密码错误。"),
    "password_mismatch": ("The two new passwords differ.", "Hai mật khẩu mới không khớp nhau.", "两次输入的新密码不一致。"),
    "password_weak": ("The new password is too short, or the same as the old one.",
                      "Mật khẩu mới quá ngắn hoặc trùng với mật khẩu cũ.", "新密码太短，或与旧密码相同。"),
    "password_by_token": ("An API token cannot change its owner's password.",
                          "Mã API không thể đổi mật khẩu của chủ sở hữu.", "API 令牌不能修改其所有者的密码。"),
    "dashboard": ("Dashboard", "Tổng quan", "概览"),
    "extensions": ("Extensions", "Máy nhánh", "分机"),
    "groups": ("Groups", "Nhóm", "群组"),
    "cdr": ("Call records", "Nhật ký cuộc gọi", "通话记录"),
    "live": ("Live calls", "Cuộc gọi đang diễn ra", "实时通话"),
    "registered_phones": ("Registered phones", "Điện thoại đã đăng ký", "已注册话机"),
    "calls_now": ("Calls now", "Cuộc gọi hiện tại", "当前通话"),
    "calls_today": ("Calls today", "Cuộc gọi hôm nay", "今日通话"),
    "answer_rate": ("Answer rate", "Tỉ lệ trả lời", "接通率"),
    "top_callers": ("Most calls today", "Gọi nhiều nhất hôm nay", "今日通话最多"),
    "number": ("Number", "Số", "号码"),
    "name": ("Name", "Tên", "姓名"),
    "department": ("Department", "Phòng ban", "部门"),
    "email": ("E-mail", "Thư điện tử", "电子邮件"),
    "mobile": ("Mobile", "Di động", "手机"),
    "create": ("Create", "Tạo", "创建"),
    "create_extension": ("New extension", "Tạo máy nhánh", "新建分机"),
    "sip_password_once": ("SIP password (shown once, write it down now):",
                          "Mật khẩu SIP (chỉ hiện một lần, hãy ghi lại ngay):", "SIP 密码（仅显示一次，请立即记下）："),
    "search": ("Search", "Tìm kiếm", "搜索"),
    "since": ("From", "Từ", "从"),
    "until": ("To", "Đến", "到"),
    "disposition": ("Result", "Kết quả", "结果"),
    "hunt_group": ("Hunt group", "Nhóm đổ chuông", "振铃组"),
    "code_owner": ("Account code owner", "Chủ mã tài khoản", "账户代码持有人"),
    "download_csv": ("Download CSV", "Tải CSV", "下载 CSV"),
    "started": ("Started", "Bắt đầu", "开始"),
    "caller": ("Caller", "Người gọi", "主叫"),
    "dialled": ("Dialled", "Số gọi", "被叫"),
    "destination": ("Reached", "Đích", "接通"),
    "duration": ("Duration (s)", "Thời lượng (giây)", "时长（秒）"),
    "state": ("State", "Trạng thái", "状态"),
    "legs": ("Legs", "Nhánh", "话路"),
    "user_agent": ("Device", "Thiết bị", "设备"),
    "no_rows": ("Nothing to show.", "Không có dữ liệu.", "暂无数据。"),
    "members": ("Members", "Thành viên", "成员"),
    "short_number": ("Short number", "Số ngắn", "短号"),
    "forbidden": ("You may not see this page.", "Bạn không có quyền xem trang này.", "您无权查看此页面。"),
    "previous": ("Newer", "Mới hơn", "较新"),
    "next": ("Older", "Cũ hơn", "较早"),
    "times_in": ("Times in", "Giờ theo", "时区"),
    "language": ("Language", "Ngôn ngữ", "语言"),
    "reports": ("Reports", "Báo cáo", "报表"),
    "top_spenders": ("Top spenders today", "Chi phí cao nhất hôm nay", "今日话费最高"),
    "report_by": ("Per", "Theo", "按"),
    "period": ("Period", "Kỳ", "期间"),
    "by_department": ("Department", "Phòng ban", "部门"),
    "by_extension": ("Extension", "Máy nhánh", "分机"),
    "by_code": ("Account code", "Mã tài khoản", "账户代码"),
    "by_class": ("Call class", "Loại cuộc gọi", "呼叫类别"),
    "by_trunk": ("Trunk", "Trung kế", "中继"),
    "by_project": ("Project", "Dự án", "项目"),
    "calls": ("Calls", "Cuộc gọi", "通话"),
    "answered": ("Answered", "Đã trả lời", "已接通"),
    "minutes": ("Minutes", "Phút", "分钟"),
    "cost": ("Cost", "Chi phí", "费用"),
    "total": ("Total", "Tổng", "合计"),
    "traffic": ("Traffic", "Lưu lượng", "话务量"),
    "average_wait": ("Average wait", "Thời gian chờ trung bình", "平均等待"),
    "calls_per_hour": ("Calls per hour", "Cuộc gọi theo giờ", "每小时通话"),
}

_INDEX: Final = {language: i for i, language in enumerate(LANGUAGES)}


def text(key: str, language: str) -> str:
    words = TEXT.get(key)
    if words is None:
        return key
    return words[_INDEX.get(language, 0)] or words[0]


def pick_language(user_language: str | None, cookie: str | None, accept_language: str | None) -> str:
    # The switcher's cookie first: it is what the person at this browser
    # just chose, even when their account has a language of its own.
    for choice in (cookie, user_language):
        if choice in LANGUAGES:
            return choice
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        primary = tag.split("-")[0]
        if primary in LANGUAGES:
            return primary
    return "en"
