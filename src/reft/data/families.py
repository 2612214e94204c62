"""The synthetic task's template families: question phrasings, solution steps, paths.

Each family samples its numbers from a spec, phrases the question one of several ways and
lists candidate solution paths (orders of the same steps); ``reft.data.synthetic`` draws
problems from them, keeps the valid paths and renders one as N-CoT or P-CoT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

WORDS = {key: words.split() for key, words in {
    "NAMES": "Tom Ben Sam Jack Leo Max Omar Ravi Anna Lucy Mia Emma Nora Lily Zoe Ella",
    "ITEMS": "pens books apples toys cups candles socks plates kites hats",
    "THINGS": "stickers cards marbles candies beads stamps buttons shells",
    "FOODS": "cookies muffins cakes rolls pies buns", "VEHICLES": "car van bus truck",
    "INGREDIENTS": "flour sugar milk butter oats rice nuts",
    "COLORS": "red blue green yellow white black pink", "PURCHASES": "bike game book lamp bag ball",
}.items()}
HE = set(WORDS["NAMES"][:8])  # the boys' names


@dataclass(frozen=True)
class Step:
    """One equation ``var = left op right``; ``text`` holds ``{eq}`` and entity fields."""
    var: str
    left: str | int
    op: str
    right: str | int
    text: str


@dataclass(frozen=True)
class Family:
    """A template family: how to sample it, phrasings of the question, steps and paths."""
    name: str
    spec: tuple[tuple[list[str], str], ...]  # (names, source) pairs, see _family
    questions: tuple[str, ...]
    paths: tuple[tuple[Step, ...], ...]  # the first is canonical



def _family(name: str, spec: str, questions: Sequence[str], steps: dict[str, str],
            paths: Sequence[str]) -> Family:
    """``spec``: ``person`` (a name and pronouns), ``a,b=WORDS`` (distinct words) or
    ``x=lo-hi[*step]`` (an integer); ``steps``: ``{"var[#tag]": "left op right | sentence"}``.
    """
    parsed = {}
    for key, text in steps.items():
        expr, text = text.split(" | ")
        left, op, right = (int(t) if t.isdigit() else t for t in expr.split())
        parsed[key] = Step(key.split("#")[0], left, op, right, text)
    return Family(name, _parse_spec(spec), tuple(questions),
                  tuple(tuple(parsed[k] for k in p.split()) for p in paths))


def _parse_spec(spec: str) -> tuple[tuple[list[str], str], ...]:
    """``"a,b=WORDS x=lo-hi"`` -> ``((["a", "b"], "WORDS"), (["x"], "lo-hi"))``."""
    return tuple((t.partition("=")[0].split(","), t.partition("=")[2]) for t in spec.split())



FAMILIES: tuple[Family, ...] = (
    _family("shopping", "person item1,item2=ITEMS money=3-30*10 count1=2-9 price1=2-15 "
            "count2=2-9 price2=2-15", [
        "{name} has {money} dollars. {He} buys {count1} {item1} at {price1} dollars each and "
        "{count2} {item2} at {price2} dollars each. How many dollars does {he} have left?",
        "At the shop {item1} cost {price1} dollars each and {item2} cost {price2} each. {name} "
        "buys {count1} {item1} and {count2} {item2} with {his} {money} dollars. How much is left?",
    ], {
        "cost1": "count1 * price1 | The {item1} cost {eq} dollars.",
        "cost2": "count2 * price2 | The {item2} cost {eq} dollars.",
        "spent": "cost1 + cost2 | Together they cost {eq} dollars.",
        "left": "money - spent | So {eq} dollars are left.",
        "after": "money - cost1 | After the {item1}, {eq} dollars are left.",
        "left#1": "after - cost2 | After the {item2}, {eq} dollars are left.",
        "after#2": "money - cost2 | After the {item2}, {eq} dollars are left.",
        "left#2": "after - cost1 | After the {item1}, {eq} dollars are left.",
    }, ["cost1 cost2 spent left", "cost2 cost1 spent left", "cost1 after cost2 left#1",
        "cost2 after#2 cost1 left#2"]),
    _family("recipes", "person food=FOODS ing1,ing2=INGREDIENTS cups1=2-12 cups2=2-12 "
            "batches=2-9", [
        "One batch of {food} needs {cups1} cups of {ing1} and {cups2} cups of {ing2}. {name} "
        "makes {batches} batches. How many cups of {ing1} and {ing2} does {he} use in all?",
        "{name} bakes {batches} batches of {food}. Each batch uses {cups1} cups of {ing1} and "
        "{cups2} cups of {ing2}. How many cups does {he} use in total?",
    ], {
        "per_batch": "cups1 + cups2 | One batch needs {eq} cups.",
        "total": "batches * per_batch | So {he} uses {eq} cups.",
        "used1": "batches * cups1 | {He} uses {eq} cups of {ing1}.",
        "used2": "batches * cups2 | {He} uses {eq} cups of {ing2}.",
        "total#a": "used1 + used2 | In all {he} uses {eq} cups.",
    }, ["per_batch total", "used1 used2 total#a", "used2 used1 total#a"]),
    _family("sharing", "person thing=THINGS packs=2-9 per_pack=2-12 more=1-9 friends=2-6", [
        "{name} has {packs} packs of {per_pack} {thing}. {He} buys {more} more packs. Then {he} "
        "shares all the {thing} equally among {friends} friends. How many does each get?",
        "A pack holds {per_pack} {thing}. {name} had {packs} packs and got {more} more. {He} "
        "splits the {thing} evenly between {friends} friends. How many {thing} does each get?",
    ], {
        "all_packs": "packs + more | {He} has {eq} packs.",
        "total": "all_packs * per_pack | That is {eq} {thing}.",
        "each": "total / friends | Each friend gets {eq} {thing}.",
        "packs_each": "all_packs / friends | Each friend gets {eq} packs.",
        "each#p": "packs_each * per_pack | That is {eq} {thing} each.",
        "from_pack": "per_pack / friends | Each friend gets {eq} {thing} from every pack.",
        "each#f": "all_packs * from_pack | So each friend gets {eq} {thing}.",
        "old": "packs * per_pack | The first packs hold {eq} {thing}.",
        "new": "more * per_pack | The new packs hold {eq} {thing}.",
        "total#n": "old + new | That is {eq} {thing}.",
    }, ["all_packs total each", "all_packs packs_each each#p", "all_packs from_pack each#f",
        "from_pack all_packs each#f", "old new total#n each"]),
    _family("rates", "person purchase=PURCHASES hours=2-9 rate=5-25 days=2-7 spent=1-30*5", [
        "{name} works {hours} hours a day and earns {rate} dollars an hour. After {days} days "
        "{he} spends {spent} dollars on a {purchase}. How many dollars does {he} have left?",
        "{name} earns {rate} dollars for each hour of work. {He} works {hours} hours a day for "
        "{days} days, then buys a {purchase} for {spent} dollars. How much money is left?",
    ], {
        "daily": "hours * rate | {He} earns {eq} dollars a day.",
        "earned": "daily * days | In {days} days {he} earns {eq} dollars.",
        "total_hours": "hours * days | {He} works {eq} hours in all.",
        "earned#h": "total_hours * rate | So {he} earns {eq} dollars.",
        "left": "earned - spent | {He} has {eq} dollars left.",
    }, ["daily earned left", "total_hours earned#h left"]),
    _family("ages", "a,b,c=NAMES age_a=5-40 older=2-15 younger=1-12", [
        "{a} is {age_a} years old. {b} is {older} years older than {a}. {c} is {younger} years "
        "younger than {b}. What is the sum of their three ages?",
        "{b} is {older} years older than {a}, who is {age_a}. {c} is {younger} years younger "
        "than {b}. How old are {a}, {b} and {c} together?",
    ], {
        "age_b": "age_a + older | {b} is {eq} years old.",
        "age_c": "age_b - younger | {c} is {eq} years old.",
        "ab": "age_a + age_b | {a} and {b} are {eq} together.",
        "total": "ab + age_c | All three are {eq} years old together.",
        "bc": "age_b + age_c | {b} and {c} are {eq} together.",
        "total#bc": "age_a + bc | All three are {eq} years old together.",
        "ac": "age_a + age_c | {a} and {c} are {eq} together.",
        "total#ac": "ac + age_b | All three are {eq} years old together.",
    }, ["age_b age_c ab total", "age_b ab age_c total", "age_b age_c bc total#bc",
        "age_b age_c ac total#ac"]),
    _family("collections", "person thing=THINGS col1,col2,col3=COLORS count1=3-40 count2=5-40 "
            "count3=3-40 given=2-20", [
        "{name} has {count1} {col1}, {count2} {col2} and {count3} {col3} {thing}. {He} gives "
        "away {given} {col2} {thing}. How many {thing} does {he} have now?",
        "A box holds {count1} {col1} {thing}, {count2} {col2} {thing} and {count3} {col3} "
        "{thing}. {name} takes out {given} of the {col2} ones. How many {thing} are left?",
    ], {
        "left2": "count2 - given | {eq} {col2} {thing} are left.",
        "s12": "count1 + count2 | The {col1} and {col2} ones make {eq}.",
        "total": "s12 + count3 | With the {col3} ones, that is {eq} {thing}.",
        "s23": "count2 + count3 | The {col2} and {col3} ones make {eq}.",
        "total#23": "count1 + s23 | With the {col1} ones, that is {eq} {thing}.",
        "s13": "count1 + count3 | The {col1} and {col3} ones make {eq}.",
        "total#13": "s13 + count2 | With the {col2} ones, that is {eq} {thing}.",
        "left": "total - given | So {eq} {thing} are left.",
        "s12#l": "count1 + left2 | With the {col1} ones, that is {eq}.",
        "left#12": "s12 + count3 | With the {col3} ones, {eq} {thing} are left.",
        "s23#l": "left2 + count3 | With the {col3} ones, that is {eq}.",
        "left#23": "count1 + s23 | With the {col1} ones, {eq} {thing} are left.",
        "left#13": "s13 + left2 | With the {col2} ones left, that is {eq} {thing}.",
    }, ["left2 s12#l left#12", "left2 s23#l left#23", "s12 total left", "s23 total#23 left",
        "s13 total#13 left", "s13 left2 left#13", "left2 s13 left#13"]),
    _family("comparisons", "a,b,c=NAMES thing=THINGS has_a=3-30 times=2-5 fewer=1-20", [
        "{a} has {has_a} {thing}. {b} has {times} times as many {thing} as {a}. {c} has {fewer} "
        "fewer {thing} than {b}. How many more {thing} does {c} have than {a}?",
        "{b} has {times} times as many {thing} as {a}, and {a} has {has_a}. {c} has {fewer} "
        "{thing} less than {b}. How many more {thing} does {c} have than {a}?",
    ], {
        "has_b": "times * has_a | {b} has {eq} {thing}.",
        "has_c": "has_b - fewer | {c} has {eq} {thing}.",
        "more": "has_c - has_a | {c} has {eq} more than {a}.",
        "b_more": "has_b - has_a | {b} has {eq} more than {a}.",
        "more#b": "b_more - fewer | So {c} has {eq} more than {a}.",
        "extra": "times - 1 | {b} has {eq} extra lots of {a}'s {thing}.",
        "b_more#x": "extra * has_a | So {b} has {eq} more than {a}.",
    }, ["has_b has_c more", "has_b b_more more#b", "extra b_more#x more#b"]),
    _family("travel", "person vehicle=VEHICLES speed=2-12*5 hours_mon=2-5 hours_tue=2-5 "
            "hours_wed=2-5", [
        "{name}'s {vehicle} goes {speed} km every hour. It drives {hours_mon} hours on Monday, "
        "{hours_tue} hours on Tuesday and {hours_wed} hours on Wednesday. How many km is that?",
        "{name} drives {his} {vehicle} at {speed} km per hour: {hours_mon} hours on Monday, "
        "{hours_tue} on Tuesday and {hours_wed} on Wednesday. How far does {he} drive in km?",
    ], {
        "mon_tue": "hours_mon + hours_tue | Monday and Tuesday take {eq} hours.",
        "hours": "mon_tue + hours_wed | With Wednesday, that is {eq} hours.",
        "tue_wed": "hours_tue + hours_wed | Tuesday and Wednesday take {eq} hours.",
        "hours#tw": "hours_mon + tue_wed | With Monday, that is {eq} hours.",
        "mon_wed": "hours_mon + hours_wed | Monday and Wednesday take {eq} hours.",
        "hours#mw": "mon_wed + hours_tue | With Tuesday, that is {eq} hours.",
        "km": "hours * speed | The distance is {eq} km.",
    }, ["mon_tue hours km", "tue_wed hours#tw km", "mon_wed hours#mw km"]),
    _family("savings", "person purchase=PURCHASES per_week=2-20 weeks=2-10 spent=2-60 "
            "gift=5-60", [
        "{name} saves {per_week} dollars a week for {weeks} weeks. Then {he} spends {spent} "
        "dollars on a {purchase} and gets {gift} dollars from {his} aunt. How much is left?",
        "Every week {name} puts {per_week} dollars in a jar. After {weeks} weeks {he} takes "
        "{spent} dollars out for a {purchase}, then adds a gift of {gift}. How much is in the jar?",
    ], {
        "saved": "per_week * weeks | {He} saves {eq} dollars.",
        "after": "saved - spent | After the {purchase}, {eq} dollars are left.",
        "now": "after + gift | With the gift, there are {eq} dollars.",
        "with_gift": "saved + gift | With the gift, there are {eq} dollars.",
        "now#g": "with_gift - spent | After the {purchase}, {eq} dollars are left.",
        "net": "gift - spent | The gift is {eq} dollars more than the {purchase}.",
        "now#n": "saved + net | So there are {eq} dollars.",
    }, ["saved after now", "saved with_gift now#g", "net saved now#n", "saved net now#n"]),
    _family("packing", "person food=FOODS per_box=2-10 morning=1-9*per_box "
            "afternoon=1-9*per_box sold=1-9", [
        "{name} bakes {morning} {food} in the morning and {afternoon} in the afternoon. {He} "
        "packs them in boxes of {per_box} and sells {sold} boxes. How many boxes are left?",
        "{name}'s bakery makes {morning} {food} before lunch and {afternoon} after lunch. A box "
        "holds {per_box} {food}. If {sold} boxes are sold, how many full boxes remain?",
    ], {
        "baked": "morning + afternoon | There are {eq} {food}.",
        "boxes": "baked / per_box | They fill {eq} boxes.",
        "left": "boxes - sold | So {eq} boxes are left.",
        "boxes1": "morning / per_box | The first {food} fill {eq} boxes.",
        "boxes2": "afternoon / per_box | The other {food} fill {eq} boxes.",
        "boxes#12": "boxes1 + boxes2 | That is {eq} boxes.",
    }, ["baked boxes left", "boxes1 boxes2 boxes#12 left", "boxes2 boxes1 boxes#12 left"]),
)


PATH_FAMILIES: tuple[Family, ...] = (
    _family("stock", "person item=ITEMS boxes=3-29 sold=2-28 per_box=2-9", [
        "{name}'s shop has {boxes} boxes of {item} with {per_box} {item} in each box. {He} "
        "sells {sold} boxes. How many {item} are left?",
        "A box holds {per_box} {item}. {name} has {boxes} boxes of {item} and sells {sold} of "
        "them. How many {item} does {he} have left?",
    ], {
        "kept": "boxes - sold | There are {eq} boxes left.",
        "left": "kept * per_box | So {eq} {item} are left.",
        "total": "boxes * per_box | At first there are {eq} {item}.",
        "gone": "sold * per_box | {He} sells {eq} {item}.",
        "left#h": "total - gone | So {eq} {item} are left.",
    }, ["kept left", "total gone left#h"]),
    _family("price_gap", "a,b=NAMES item=ITEMS count=2-9 price1=5-29 price2=3-28", [
        "{a} buys {count} {item} at {price1} dollars each. {b} buys {count} {item} at {price2} "
        "dollars each. How many more dollars does {a} spend than {b}?",
        "{a} and {b} each buy {count} {item}. {a} pays {price1} dollars for each and {b} pays "
        "{price2} dollars for each. How much more does {a} spend?",
    ], {
        "gap": "price1 - price2 | For each of the {item} {a} pays {eq} dollars more.",
        "more": "count * gap | So {a} spends {eq} dollars more.",
        "cost_a": "count * price1 | {a} spends {eq} dollars.",
        "cost_b": "count * price2 | {b} spends {eq} dollars.",
        "more#h": "cost_a - cost_b | So {a} spends {eq} dollars more.",
    }, ["gap more", "cost_a cost_b more#h"]),
    _family("shares", "person thing=THINGS friends=2-5 per_pack=1-5*friends packs=2-12", [
        "{name} has {packs} packs of {per_pack} {thing}. {He} shares them equally among "
        "{friends} friends. How many {thing} does each friend get?",
        "A pack holds {per_pack} {thing}. {name} splits {packs} packs evenly between {friends} "
        "friends. How many {thing} does each friend get?",
    ], {
        "from_pack": "per_pack / friends | Each friend gets {eq} {thing} from every pack.",
        "each": "packs * from_pack | So each friend gets {eq} {thing}.",
        "total": "packs * per_pack | {name} has {eq} {thing}.",
        "each#h": "total / friends | So each friend gets {eq} {thing}.",
    }, ["from_pack each", "total each#h"]),
    _family("boxes", "person food=FOODS per_box=2-7 morning=1-4*per_box afternoon=1-4*per_box", [
        "{name} bakes {morning} {food} in the morning and {afternoon} in the afternoon. {He} "
        "packs them in boxes of {per_box}. How many boxes does {he} fill?",
        "{name}'s bakery makes {morning} {food} before lunch and {afternoon} after lunch. A box "
        "holds {per_box} {food}. How many boxes does {name} fill?",
    ], {
        "boxes1": "morning / per_box | The morning {food} fill {eq} boxes.",
        "boxes2": "afternoon / per_box | The afternoon {food} fill {eq} boxes.",
        "boxes": "boxes1 + boxes2 | So {eq} boxes are filled.",
        "baked": "morning + afternoon | There are {eq} {food}.",
        "boxes#h": "baked / per_box | So {eq} boxes are filled.",
    }, ["boxes1 boxes2 boxes", "baked boxes#h"]),
    _family("multiples", "a,b=NAMES thing=THINGS has_a=2-15 times=2-9", [
        "{a} has {has_a} {thing}. {b} has {times} times as many {thing} as {a}. How many more "
        "{thing} does {b} have than {a}?",
        "{b} has {times} times as many {thing} as {a}, who has {has_a}. How many more {thing} "
        "does {b} have than {a}?",
    ], {
        "extra": "times - 1 | {b} has {eq} more lots of {a}'s {thing}.",
        "more": "extra * has_a | So {b} has {eq} more {thing} than {a}.",
        "has_b": "times * has_a | {b} has {eq} {thing}.",
        "more#h": "has_b - has_a | So {b} has {eq} more {thing} than {a}.",
    }, ["extra more", "has_b more#h"]),
    _family("distance", "a,b=NAMES speed1=10-29 speed2=5-28 hours=2-9", [
        "{a} and {b} leave town together and ride the same way. {a} cycles {speed1} km per "
        "hour and {b} cycles {speed2} km per hour. How many km apart are they after {hours} hours?",
        "{a} cycles at {speed1} km per hour and {b} at {speed2} km per hour, starting together "
        "and going the same way. How far apart, in km, are they after {hours} hours?",
    ], {
        "gap": "speed1 - speed2 | Every hour {a} gets {eq} km further ahead.",
        "apart": "gap * hours | After {hours} hours they are {eq} km apart.",
        "dist_a": "speed1 * hours | {a} rides {eq} km.",
        "dist_b": "speed2 * hours | {b} rides {eq} km.",
        "apart#h": "dist_a - dist_b | So they are {eq} km apart.",
    }, ["gap apart", "dist_a dist_b apart#h"]),
    _family("weekly", "person earn=10-29 spend=5-28 weeks=2-9", [
        "{name} earns {earn} dollars a week and spends {spend} dollars a week. How many dollars "
        "does {he} save in {weeks} weeks?",
        "Each week {name} gets {earn} dollars and spends {spend} of them. How many dollars does "
        "{he} save after {weeks} weeks?",
    ], {
        "per_week": "earn - spend | {He} saves {eq} dollars a week.",
        "saved": "per_week * weeks | In {weeks} weeks {he} saves {eq} dollars.",
        "earned": "earn * weeks | {He} earns {eq} dollars.",
        "spent": "spend * weeks | {He} spends {eq} dollars.",
        "saved#h": "earned - spent | So {he} saves {eq} dollars.",
    }, ["per_week saved", "earned spent saved#h"]),
)


_PRODUCT_SPECS = {  # the same wording as the paths level, other numbers: gap * multiplier
    "weekly": "person spend=11-47 gap=1-2 earn=spend+gap weeks=11-49",
    "price_gap": "a,b=NAMES item=ITEMS count=11-49 price2=11-47 gap=1-2 price1=price2+gap",
    "distance": "a,b=NAMES speed2=11-47 gap=1-2 speed1=speed2+gap hours=11-49",
    "stock": "person item=ITEMS sold=11-47 gap=1-2 boxes=sold+gap per_box=11-49",
}
PRODUCT_FAMILIES: tuple[Family, ...] = tuple(
    replace(next(f for f in PATH_FAMILIES if f.name == name), spec=_parse_spec(spec))
    for name, spec in _PRODUCT_SPECS.items())
LEVEL_FAMILIES = {"paths": PATH_FAMILIES, "products": PRODUCT_FAMILIES}
"""Levels with their own families, whose problems all have both of their families' paths."""
