"""Every word the terminal shows, in English and Simplified Chinese.

Operators read the screen from a step away while holding a container: short,
plain sentences that say what to do, never an error code.
"""

# Chinese text is punctuated with full-width colons and commas, which RUF001
# would take for look-alikes of ASCII ones.
# ruff: noqa: RUF001

from collections.abc import Mapping

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "title": "Station {station} · {site}",
        "scan_placeholder": "Scan a card",
        "ready": "Ready: scan a card",
        "working": "Checking {code} …",
        "conn_connecting": "Connecting …",
        "conn_online": "Online",
        "conn_offline": "No connection — retrying",
        "conn_refused": "{reason} — retrying",
        "queue_title": "Work to do",
        "queue_empty": "Nothing to make",
        "queue_signal": "Make {quantity} {item} · card {card} · since {time}",
        "queue_instruction": (
            "Order {order}: make {quantity} {item} · due {due} · priority {priority}"
            " · scan {instruction}"
        ),
        "loops_title": "Input buffers",
        "loops_none": "No input loops",
        "loop_line": (
            "{loop} {item} from {supplier}: {wip}/{cap} · {full} full · {empty} empty"
            " · {in_process} in process"
        ),
        "loop_set_aside": " · {count} set aside",
        "process_title": "In process",
        "process_none": "Nothing in process",
        "process_card": "Card {card}: {quantity} {item} · scan the card when done",
        "process_instruction": "Order {order}: {quantity} {item} · scan {instruction} when done",
        "holds_title": "Set aside",
        "hold_line": "SET ASIDE {cards} — lot {lot}: {reason}",
        "done_scan": "TAKEN: {card} — {supplier} will make a new one",
        "done_scan_retired": "TAKEN: {card} — card retired, the loop is smaller: hand it in",
        "done_start": "STARTED: {card} — make {quantity} {item}",
        "done_complete": "DONE: {card} — {quantity} {item} into the buffer, lot {lot}",
        "done_start_instruction": "STARTED: order {order} — make {quantity} {item}",
        "done_complete_instruction": "DONE: order {order} — {quantity} {item}, lot {lot}",
        "refused_overproduction": "Buffer full: do not produce",
        "refused_quarantined": "Lot quarantined: set this container aside",
        "refused_wrong_station": "Not this station's card: give it to its station",
        "refused_card_state": "This card cannot be used for that now: check the container",
        "refused_no_signal": "Nothing to make: do not produce",
        "refused_withdrawn": "Order withdrawn: do not produce",
        "refused_unknown_card": "Unknown card: check the code",
        "refused_not_found": "Not found: check the code",
        "refused_unknown_station": "Unknown station or site: check this terminal's settings",
        "refused_permission": "This terminal may not do that",
        "refused_token": "Token not accepted",
        "refused_offline": "No connection: scan the card again",
        "refused_other": "Refused: {detail}",
    },
    "zh": {
        "title": "工位 {station} · {site}",
        "scan_placeholder": "请扫描看板卡",
        "ready": "就绪：请扫描看板卡",
        "working": "正在查询 {code} …",
        "conn_connecting": "正在连接 …",
        "conn_online": "已连接",
        "conn_offline": "无连接 — 正在重试",
        "conn_refused": "{reason} — 正在重试",
        "queue_title": "待做工作",
        "queue_empty": "暂无生产任务",
        "queue_signal": "生产 {quantity} {item} · 看板卡 {card} · 自 {time}",
        "queue_instruction": (
            "订单 {order}：生产 {quantity} {item} · 交期 {due} · 优先级 {priority}"
            " · 扫描 {instruction}"
        ),
        "loops_title": "来料缓冲区",
        "loops_none": "无来料看板循环",
        "loop_line": (
            "{loop} {item} 来自 {supplier}：在制 {wip}/{cap} · 满 {full} · 空 {empty}"
            " · 生产中 {in_process}"
        ),
        "loop_set_aside": " · 隔离 {count}",
        "process_title": "生产中",
        "process_none": "无在制工作",
        "process_card": "看板卡 {card}：{quantity} {item} · 完工后扫描此卡",
        "process_instruction": "订单 {order}：{quantity} {item} · 完工后扫描 {instruction}",
        "holds_title": "隔离放置",
        "hold_line": "请隔离 {cards} — 批次 {lot}：{reason}",
        "done_scan": "已取用：{card} — {supplier} 将补做一箱",
        "done_scan_retired": "已取用：{card} — 看板卡已停用，循环已缩小：请交回此卡",
        "done_start": "已开工：{card} — 生产 {quantity} {item}",
        "done_complete": "已完工：{card} — {quantity} {item} 已入缓冲区，批次 {lot}",
        "done_start_instruction": "已开工：订单 {order} — 生产 {quantity} {item}",
        "done_complete_instruction": "已完工：订单 {order} — {quantity} {item}，批次 {lot}",
        "refused_overproduction": "缓冲区已满：请勿生产",
        "refused_quarantined": "批次已隔离：请将此容器放到一边",
        "refused_wrong_station": "不是本工位的看板卡：请交给所属工位",
        "refused_card_state": "此看板卡现在不能这样使用：请检查容器",
        "refused_no_signal": "没有待生产的任务：请勿生产",
        "refused_withdrawn": "订单已撤回：请勿生产",
        "refused_unknown_card": "未知看板卡：请检查条码",
        "refused_not_found": "未找到：请检查条码",
        "refused_unknown_station": "未知工位或工厂：请检查本终端的设置",
        "refused_permission": "此终端无权执行该操作",
        "refused_token": "令牌无效",
        "refused_offline": "无连接：请重新扫描",
        "refused_other": "被拒绝：{detail}",
    },
}

LANGUAGES = tuple(MESSAGES)


def language_from_locale(environ: Mapping[str, str]) -> str:
    """zh for a Chinese locale, else en; LC_ALL overrides LC_MESSAGES overrides
    LANG, as for any other program."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if value := environ.get(name):
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


class Catalogue:
    """The messages of one language: `t("done_scan", card="P-001", supplier="STAMP")`."""

    def __init__(self, language: str) -> None:
        self._messages = MESSAGES[language]

    def __call__(self, key: str, **values: object) -> str:
        return self._messages[key].format(**values)
