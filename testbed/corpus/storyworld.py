"""storyworld: a built-in corpus of children's stories whose true distribution is known exactly.

A model-collapse experiment needs a "human" corpus it can measure against. Real
corpora only give us samples; here every story is written by a small seeded
probabilistic grammar, so we know the exact probability of any text, the exact
entropy of the story distribution and the exact frequency of every word,
including a long tail of rare words that a collapsing model should lose first.

The grammar is a finite template grammar (no recursion): a tree of

    Lit     fixed tokens                       "once upon a time ,"
    Word    one word from a Zipf-weighted class  {animal} -> dog, cat, ..., aardvark
    Seq     children one after another
    Choice  one weighted alternative
    Bind    a Word whose value is remembered     the hero's name when first named
    Ref     the remembered value again, prob 1   the hero's name later in the story

Every word type belongs to exactly one class or is a literal, and the grammar is
checked to be LL(1) when it is built: at every Choice the next token alone says
which alternative was taken. LL(1) grammars are unambiguous, so a text has at
most one derivation and its probability is the product of the choices along it.
The same property makes parsing a single left-to-right pass, which is why
logprob() is fast. Every story ends with the sentence "The end." and "end"
occurs nowhere else, so no story is a proper prefix of another.
"""
import math
import random
import re
from bisect import bisect_right
from functools import lru_cache

from testbed.text import words

# Threshold on a word's unigram probability below which the evaluation calls a
# word "rare": at most one expected occurrence in a 20,000-word sample. That
# makes ~340 rare words, of which a 20,000-word sample from the grammar itself
# holds only ~40%: a model that keeps writing them has kept its tail.
DEFAULT_RARE_MAX_PROB = 5e-5

ZIPF_S = 1.1  # weight of the r-th word of a class is proportional to 1 / r**ZIPF_S

# ---------------------------------------------------------------------------
# Lexicons. Order matters: earlier words are more frequent (Zipf by rank).
# Classes are pairwise disjoint and share no word with the templates below;
# Grammar checks this when it is built.

GIRL_NAMES = """lily sue mia emma lucy anna sara amy ella zoe kate jane ruby molly sophie grace chloe
ava olivia lisa nina tina julia hannah alice clara maya lena nora eva ivy lola rosie millie hazel stella
luna bella penny holly poppy jenny katie megan laura emily amelia isla freya daisy iris josie maggie
hattie elsie winnie tilly libby abby becky carla dora edith fiona gina helen irene kira leah martha
nadia paula queenie rita selma tessa una vera wendy xena yara zara agnes bonnie cora delia esme flora
greta hilda ingrid jada kayla lorna mabel nell pearl rhea sadie thea ursula vivian willa yasmin zelda
beth cleo dina elise gwen inez kim lara maud noelle""".split()

BOY_NAMES = """tom ben tim sam jack leo finn jake noah liam jim bob joe dan ted ollie oscar henry max
alex ryan luke adam eli owen theo kai milo hugo felix jasper toby billy danny eddie freddie george
harry isaac james kevin louis mark nick oliver peter quinn ralph simon timmy victor walter xavier zack
arthur bruno carl dylan ethan frank gus hank ivan jonah karl lenny marco nate otto pablo roy seth
troy ugo vince wes yuri zane abe boris cody dean ezra fred gabe hal ian joel kurt lars miles ned omar
pete rick stan tony vic wyatt ari bram cole emil flynn glen hugh igor jay ken leon mick neil
otis percy reed sid tad ulf vaughn""".split()

PET_NAMES = """spot buddy fluffy whiskers coco rex patch biscuit pepper shadow sparky snowy fuzzy
bubbles ginger muffin peanut rusty smokey pip nibbles squeaky bingo boots chester dotty flopsy goldie
hopper jingles kiki lulu mittens nugget oreo pickles ruffles scamp skippy sparkle tinker toffee
twinkle wiggles ziggy zippy bandit barney bramble chip cuddles dusty freckles gizmo marbles noodle
pebbles pippin rascal snickers sprinkles teddy thumper trixie tucker wally winky""".split()

# Follow "a": consonant-initial so the article is never "an" (checked).
HERO_ADJ = """little small brave young shy sweet curious clever gentle silly tiny polite
nice smart tall bold caring daring helpful hopeful loving lively lovely lucky merry modest neat
noisy patient quick rosy sleepy tidy wise witty zany chatty cheeky cuddly dreamy giggly mighty nimble
perky plucky spunky thoughtful timid wobbly""".split()

ANIMAL_ADJ = """friendly big furry cute soft spotted striped shaggy scruffy sleek speedy fat round
chubby hairy prickly slimy scaly spiky woolly bouncy tubby dainty nosy fancy pudgy lanky""".split()

PLACE_ADJ = """quiet sunny pretty peaceful cozy magical hidden busy windy rainy foggy misty sandy
rocky grassy leafy charming colorful distant northern southern""".split()

SETTLEMENTS = "village town city kingdom land valley country hamlet island".split()

HOMES = """house cottage hut cabin castle tent barn nest den burrow shed treehouse tower palace
boat caravan farmhouse bungalow lighthouse mill shell teapot shoe""".split()

NATURE = """river lake forest hill sea pond woods mountain meadow field stream cave jungle desert
ocean waterfall swamp marsh creek cliff glade grove orchard bay shore lagoon canyon volcano bushes""".split()

WATER = "puddle mud fountain well ditch bathtub drain gutter".split()

PLACES = """park garden beach zoo store school playground library market farm shop bakery museum
circus fair pool yard street station hospital cinema cafe church harbor carnival aquarium gym theater
stadium square bridge restaurant garage attic kitchen backyard porch""".split()

TOYS = """ball doll kite car train truck robot block puzzle drum top balloon bike wagon plane rocket
puppet crayon book ship whistle shovel marble rattle horn flute guitar piano bell frisbee skateboard
scooter sled swing tricycle wand crown sword shield yoyo pinwheel hoop jigsaw toy racket trumpet
xylophone harmonica tambourine violin ukulele kazoo glider helicopter tractor bus dinosaur dollhouse
spaceship submarine firetruck bulldozer digger jeep van wheel compass telescope magnet microscope
lantern flashlight map globe notebook pencil paintbrush chalk clay sticker stamp coin gem jewel
necklace bracelet ring locket mirror comb brush button ribbon feather bubble box bag blanket pillow
cup spoon bowl jar umbrella key clock lamp card letter picture painting photo trophy medal flag rope
ladder net""".split()

COLORS = """red blue green yellow pink purple brown black white gold silver gray teal navy beige
crimson scarlet maroon lilac lavender turquoise magenta cyan bronze copper tan coral mint cream""".split()

FAMILY = """mom dad grandma grandpa sister brother aunt uncle cousin baby nanny neighbor teacher granny
mommy daddy papa mama nana grandmother grandfather auntie twin""".split()

DAY_PARTS = "day morning afternoon evening night summer winter autumn spring weekend holiday".split()

SAY = "said replied shouted whispered answered exclaimed called yelled giggled chirped squeaked".split()

FEEL_GOOD = """happy glad excited proud joyful thankful delighted cheerful grateful thrilled pleased
content calm relieved overjoyed ecstatic elated""".split()

FEEL_BAD = """sad scared upset angry worried lonely grumpy afraid unhappy nervous frightened gloomy
miserable cross sorry disappointed frustrated cranky sulky glum tearful anxious jealous confused
embarrassed""".split()

WEATHER = "rain snow hail pour thunder drizzle storm sleet".split()
WIND = "wind breeze gust gale whirlwind tornado".split()
CLOTHES = "hat scarf coat jacket cap shirt sock glove mitten dress skirt hood cape bonnet shawl".split()
BODY = "knee leg arm foot hand head nose elbow toe finger paw tail wing ankle wrist chin".split()

FOODS = """cookies apples cake bread candy berries grapes cheese soup pie carrots bananas cherries
strawberries muffins pancakes honey milk juice jam popcorn nuts seeds corn peas rice noodles pizza
sandwiches crackers biscuits cupcakes donuts lemonade oranges pears plums peaches melon watermelon
blueberries raspberries chocolate cereal toast eggs beans potatoes tomatoes pumpkins lollipops
jellybeans gumdrops marshmallows pretzels tarts buns porridge yogurt mangoes kiwis figs dates olives
acorns""".split()

HOBBIES = """sing dance paint draw read run jump swim climb bake build explore skip hop write skate ski
knit sew cook dig hike ride race giggle twirl spin doodle juggle tumble wander splash dream count
hum""".split()

PLAYED = """played laughed danced sang ran jumped swam explored raced skipped hopped built painted drew
rode splashed twirled sat talked walked wandered sailed baked cooked dug hiked rested napped whistled
hummed chatted climbed skated tumbled""".split()

MEET = "met saw found noticed discovered heard".split()
FIX = "fix clean mend carry wash dry open hold reach catch save".split()
TALES = "story joke song riddle tale poem secret".split()

ANIMALS = """dog cat bird rabbit bunny bear fox mouse frog duck owl lion pig cow horse sheep goat hen
puppy kitten squirrel deer elephant monkey tiger giraffe zebra turtle snake bee butterfly ant ladybug
spider snail worm hedgehog raccoon beaver otter seal penguin dolphin whale shark crab octopus panda
koala kangaroo hippo rhino camel llama donkey pony lamb calf goose swan parrot peacock robin sparrow
crow eagle hawk bat badger mole hamster gerbil ferret lizard chameleon gecko toad salamander moose
elk bison buffalo wolf coyote skunk porcupine armadillo sloth lemur gorilla chimp baboon leopard
cheetah jaguar panther lynx yak ox mule alpaca flamingo pelican stork heron crane ostrich emu toucan
hummingbird woodpecker bluebird canary finch pigeon dove chick duckling puffin walrus narwhal
jellyfish starfish seahorse lobster shrimp clam oyster beetle cricket grasshopper caterpillar firefly
dragonfly moth tadpole newt platypus wombat meerkat mongoose hyena tapir okapi anteater aardvark
iguana tortoise dragon unicorn""".split()

# Capitalised wherever they occur, not only at a sentence start.
_ALWAYS_CAP = frozenset(GIRL_NAMES + BOY_NAMES + PET_NAMES + ["i"])

# ---------------------------------------------------------------------------
# Tokens and surface form. A story is a token list (lower-case words and
# punctuation); render() is the only place that decides spacing and capitals,
# and logprob() accepts a text only if it renders back to exactly itself.

_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|[.,!?\"]")
# valid_prefix's: any other character is a token too (one the grammar never writes), not skipped as space is;
# a tokenizer's unknown-word token (<|unk|>, decoded) and a split-off "'s" are one token each, as _TOKEN counts them.
_TOKEN_OR_JUNK = re.compile(r"<\|\w+\|>|" + _TOKEN.pattern + r"|'[A-Za-z]+|\S")
_END = None  # the lookahead "token" past the end of a story


def tokenize(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def render(tokens: list[str]) -> str:
    """Tokens -> one line of text. Quotes alternate open/close, so their spacing follows from parity."""
    out = []
    cap, space, inquote = True, False, False
    for t in tokens:
        if t == '"':
            if inquote:                  # closing quote hugs the punctuation before it
                out.append('"')
                space = True
            else:                        # opening quote hugs the word after it
                if space:
                    out.append(" ")
                out.append('"')
                space, cap = False, True
            inquote = not inquote
        elif t in ".,!?":
            out.append(t)
            space, cap = True, t != ","
        else:
            if space:
                out.append(" ")
            out.append(t.capitalize() if cap or t in _ALWAYS_CAP else t)
            space, cap = True, False
    return "".join(out)


# ---------------------------------------------------------------------------
# Grammar nodes. gen() writes tokens and adds log-probability to st.lp; parse()
# consumes tokens from pos and returns the new position, or -1 if it cannot,
# leaving in st.stop the position of the first token it could not accept.
# The parse never backtracks, so the first -1 ends it and st.stop is exactly
# the end of the longest prefix the grammar can continue (valid_prefix), at no
# cost to texts that parse. `pick(node)` returns the index of the alternative
# to take: a random draw when sampling, the next recorded index when replaying a parse.

class _State:
    __slots__ = ("env", "lp", "picks", "lenient", "stop")

    def __init__(self, lenient=False):
        # lenient: a Ref accepts any word of its class, so names need not repeat.
        self.env, self.lp, self.picks, self.lenient, self.stop = {}, 0.0, [], lenient, None


def _normalise(weights):
    total = float(sum(weights))
    probs = [w / total for w in weights]
    cum, c = [], 0.0
    for p in probs:
        c += p
        cum.append(c)
    cum[-1] = 1.0  # so a draw in [0, 1) always lands on an alternative
    return probs, cum, [math.log(p) for p in probs]


class Lit:
    def __init__(self, toks):
        self.toks = list(toks)
        self.n = len(self.toks)

    def gen(self, pick, out, st):
        out.extend(self.toks)

    def parse(self, toks, pos, st):
        if toks[pos:pos + self.n] == self.toks:
            return pos + self.n
        k = 0  # the tokens before the mismatch are still a prefix the grammar can continue
        while pos + k < len(toks) and toks[pos + k] == self.toks[k]:
            k += 1
        st.stop = pos + k
        return -1


class Seq:
    def __init__(self, kids):
        self.kids = list(kids)

    def gen(self, pick, out, st):
        for k in self.kids:
            k.gen(pick, out, st)

    def parse(self, toks, pos, st):
        for k in self.kids:
            pos = k.parse(toks, pos, st)
            if pos < 0:
                return -1
        return pos


class Word:
    def __init__(self, name, vocab, s=ZIPF_S):
        self.name, self.words = name, list(vocab)
        assert len(set(self.words)) == len(self.words), f"duplicate word in class {name}"
        self.probs, self.cum, self.logp = _normalise([1.0 / r ** s for r in range(1, len(vocab) + 1)])
        self.index = {w: i for i, w in enumerate(self.words)}

    def gen(self, pick, out, st):
        i = pick(self)
        out.append(self.words[i])
        st.lp += self.logp[i]

    def parse(self, toks, pos, st):
        i = self.index.get(toks[pos]) if pos < len(toks) else None
        if i is None:
            st.stop = pos
            return -1
        st.picks.append(i)
        st.lp += self.logp[i]
        return pos + 1


class Bind(Word):
    """A Word whose value later Refs must repeat: it is the same class, remembered under `var`."""

    def __init__(self, var, cls):
        self.var, self.cls = var, cls
        self.name, self.words, self.probs, self.cum, self.logp, self.index = (
            cls.name, cls.words, cls.probs, cls.cum, cls.logp, cls.index)

    def gen(self, pick, out, st):
        i = pick(self)
        out.append(self.words[i])
        st.env[self.var] = self.words[i]
        st.lp += self.logp[i]

    def parse(self, toks, pos, st):
        pos = Word.parse(self, toks, pos, st)
        if pos >= 0:
            st.env[self.var] = toks[pos - 1]
        return pos


class Ref:
    """The word bound to `var`, again, with probability one. `cls` is the class it was bound from."""

    def __init__(self, var, cls):
        self.var, self.cls = var, cls

    def gen(self, pick, out, st):
        out.append(st.env[self.var])

    def parse(self, toks, pos, st):
        if pos < len(toks) and (toks[pos] == st.env.get(self.var) or st.lenient and toks[pos] in self.cls.index):
            return pos + 1
        st.stop = pos
        return -1


class Choice:
    def __init__(self, weights, alts):
        self.alts = list(alts)
        self.probs, self.cum, self.logp = _normalise(weights)
        self.first_map, self.null_alt = None, None  # filled in by Grammar._check

    def gen(self, pick, out, st):
        i = pick(self)
        st.lp += self.logp[i]
        self.alts[i].gen(pick, out, st)

    def parse(self, toks, pos, st):
        i = self.first_map.get(toks[pos] if pos < len(toks) else _END, self.null_alt)
        if i is None:
            st.stop = pos
            return -1
        st.picks.append(i)
        st.lp += self.logp[i]
        return self.alts[i].parse(toks, pos, st)


# ---------------------------------------------------------------------------
# The story grammar. Templates are written as ordinary text; {name} is a slot
# filled by the node of that name, $S/$O/$D are the hero's pronouns
# (she/her/her or he/him/his). The body is built once per pronoun set, so the
# hero's pronouns always agree without any context-sensitive machinery.

_TEMPLATE = re.compile(r"\{(\w+)\}|\$([SOD])|([A-Za-z]+(?:'[A-Za-z]+)*|[.,!?\"])")
_PRONOUNS = {"she": {"S": "she", "O": "her", "D": "her"}, "he": {"S": "he", "O": "him", "D": "his"}}


def _build():
    g = {}
    for name, vocab in [
        ("girl_name", GIRL_NAMES), ("boy_name", BOY_NAMES), ("pet_name", PET_NAMES),
        ("hero_adj", HERO_ADJ), ("animal_adj", ANIMAL_ADJ), ("place_adj", PLACE_ADJ),
        ("settlement", SETTLEMENTS), ("home", HOMES), ("nature", NATURE), ("water", WATER),
        ("place", PLACES), ("toy", TOYS), ("color", COLORS), ("family", FAMILY), ("day_part", DAY_PARTS),
        ("say", SAY), ("feel_good", FEEL_GOOD), ("feel_bad", FEEL_BAD), ("weather", WEATHER),
        ("wind", WIND), ("clothes", CLOTHES), ("body", BODY), ("food", FOODS), ("hobby", HOBBIES),
        ("played", PLAYED), ("meet", MEET), ("fix", FIX), ("tale", TALES), ("animal", ANIMALS),
    ]:
        g[name] = Word(name, vocab)

    pron = {}
    # One shared node, and "end" is used nowhere else: no story is a prefix of another.
    closing = Lit(["the", "end", "."])

    def t(template):
        parts, lit = [], []
        for slot, p, tok in _TEMPLATE.findall(template):
            if tok or p:
                lit.append(tok.lower() if tok else pron[p])
                continue
            if lit:
                parts.append(Lit(lit))
                lit = []
            parts.append(g[slot])
        if lit:
            parts.append(Lit(lit))
        return parts[0] if len(parts) == 1 else Seq(parts)

    def c(*pairs):
        return Choice([w for w, _ in pairs], [t(a) if isinstance(a, str) else a for w, a in pairs])

    def body(gender, hero_cls):
        pron.clear()
        pron.update(_PRONOUNS[gender])
        g["hero"] = Ref("hero", g[hero_cls])
        g["friend"] = Ref("friend", g["pet_name"])
        g["new_friend"] = Bind("friend", g["pet_name"])
        g["daily_s"] = c((3, "had a {color} {toy} that $S loved very much."),
                         (2, "loved to play with $D {family} in the {place}."),
                         (2, "liked to eat {food} with $D {family}."))
        g["greet"] = c((3, "hello, {friend}! do you want to play with me?"),
                       (2, "hi, {friend}! let's go to the {place} together!"),
                       (2, "i am so {feel_good} to meet you!"),
                       (1, "can you help me look for my {toy}?"))
        g["reply"] = c((3, "yes, i would love to!"),
                       (2, "okay, let's go!"),
                       (2, "that sounds like fun!"),
                       (1, "i like your {color} {toy}, {hero}!"))
        g["problem"] = c((3, "it started to {weather}."),
                         (2, "a strong {wind} blew $D {clothes} away."),
                         (2, "{hero} fell and hurt $D {body}."),
                         (2, "the {toy} fell into the {water}."))
        g["help"] = c((3, "helped $O {fix} the {toy}."),
                      (2, "shared some {food} with $O."),
                      (2, "gave $O a warm hug."),
                      (1, "told $O a funny {tale}."))
        g["when"] = c((3, "all {day_part} long"), (2, "until the sun went down"),
                      (1, "in the {place}"), (1, "at the {nature}"))
        g["lesson"] = c((3, "friends always help each other"), (2, "it is good to share"),
                        (2, "being kind is very important"), (1, "trying new things is fun"))
        return Seq([
            c((4, "."), (4, Seq([t("who"), c((1, "lived in a {home} near the {nature}."), (1, "loved to {hobby}."))]))),
            c((6, "$S {daily_s}"), (2, "every {day_part}, {hero} liked to play in the {place} with $D {family}.")),
            t("one {day_part},"), c((2, "{hero}"), (1, "$S")), t("went to the {place}."),
            t("there, $S {meet} a {animal_adj} {animal} named {new_friend}."),
            t('{hero} {say}, "{greet}" {friend} {say}, "{reply}"'),
            t("but then, {problem}"),
            c((2, "{hero} felt very {feel_bad}."), (1, "$S was {feel_bad} and began to cry.")),
            t("{friend} {help} {hero} felt {feel_good} again."),
            t("{hero} and {friend} {played} together {when}."),
            c((2, ""), (2, "{hero} learned that {lesson}."),
              (1, "from then on, {hero} and {friend} were best friends.")),
            closing,
        ])

    # Naming the hero picks the pronouns: girl names lead to the "she" body, boy names to "he".
    she = Seq([Bind("hero", g["girl_name"]), body("she", "girl_name")])
    he = Seq([Bind("hero", g["boy_name"]), body("he", "boy_name")])
    return Seq([
        c((6, Seq([t("once"), c((3, "upon a time,"), (1, "")), t("there was a")])),
          (2, "long ago, in a {place_adj} {settlement}, there lived a"),
          (2, "in a {place_adj} {settlement} far away, there lived a")),
        g["hero_adj"],
        Choice([3, 3, 4], [
            Seq([Lit(["girl", "named"]), she]),
            Seq([Lit(["boy", "named"]), he]),
            Seq([g["animal"], Lit(["named"]), Choice([1, 1], [she, he])]),
        ]),
    ])


# ---------------------------------------------------------------------------
# Static analysis: FIRST sets, the LL(1) check, and the exact statistics.

class Grammar:
    def __init__(self):
        self.root = _build()
        self._first, self._null = {}, {}
        self.nodes = []  # every distinct node, for the "probabilities sum to one" test
        self._collect(self.root, set())
        self._check_lexicon()
        self._check(self.root, frozenset([_END]), {})

    def _collect(self, node, seen):
        if id(node) in seen:
            return
        seen.add(id(node))
        self.nodes.append(node)
        for k in getattr(node, "kids", []) + getattr(node, "alts", []):
            self._collect(k, seen)

    def _check_lexicon(self):
        # Bind and Ref hold their class rather than having it as a child.
        classes = {c.name: c.words for c in (getattr(n, "cls", n) for n in self.nodes) if isinstance(c, Word)}
        literals = {w for n in self.nodes if isinstance(n, Lit) for w in n.toks if w not in '.,!?"'}
        owner = {}
        for name, vocab in classes.items():
            for w in vocab:
                assert words(w) == [w], f"{w!r} is not one word"
                assert w not in owner, f"{w!r} is in both {owner[w]} and {name}"
                assert w not in literals, f"{w!r} is in {name} and in a template"
                owner[w] = name
        assert "end" not in owner and [n.toks for n in self.nodes if isinstance(n, Lit) and "end" in n.toks] == [
            ["the", "end", "."]], "the closing sentence must be the only place 'end' occurs"

    def first(self, node):
        """Tokens a node can start with, and whether it can be empty."""
        key = id(node)
        if key not in self._first:
            if isinstance(node, Lit):
                f, null = frozenset(node.toks[:1]), node.n == 0
            elif isinstance(node, Word):
                f, null = frozenset(node.words), False
            elif isinstance(node, Ref):
                f, null = frozenset(node.cls.words), False
            elif isinstance(node, Seq):
                f, null = frozenset(), True
                for k in node.kids:
                    kf, kn = self.first(k)
                    f |= kf
                    if not kn:
                        null = False
                        break
            else:
                parts = [self.first(a) for a in node.alts]
                f, null = frozenset().union(*(p[0] for p in parts)), any(p[1] for p in parts)
            self._first[key], self._null[key] = f, null
        return self._first[key], self._null[key]

    def _check(self, node, follow, bound):
        """Prove the grammar LL(1) given what can follow `node`; returns the variables bound after it.

        Also checks that every Ref is preceded on every path by a Bind of the same class, and
        that a literal "a" is never followed by a vowel-initial word (it would need "an").
        """
        if isinstance(node, Lit) and node.toks and node.toks[-1] == "a":
            bad = sorted(w for w in follow if w and w[0] in "aeiou")
            assert not bad, f"'a' may be followed by {bad[:5]}"
        if isinstance(node, Seq):
            follows, f = [], follow
            for k in reversed(node.kids):
                follows.append(f)
                kf, kn = self.first(k)
                f = kf | f if kn else kf
            for k, f in zip(node.kids, reversed(follows)):
                bound = self._check(k, f, bound)
            return bound
        if isinstance(node, Choice):
            firsts = [self.first(a) for a in node.alts]
            first_map = {}
            for i, (f, _) in enumerate(firsts):
                for tok in f:
                    assert tok not in first_map, f"LL(1) conflict on {tok!r}"
                    first_map[tok] = i
            nulls = [i for i, (_, n) in enumerate(firsts) if n]
            assert len(nulls) <= 1, "two empty alternatives"
            if nulls:
                clash = follow & {tok for tok, i in first_map.items() if i != nulls[0]}
                assert not clash, f"LL(1) first/follow conflict on {sorted(clash)[:5]}"
            node.first_map, node.null_alt = first_map, (nulls[0] if nulls else None)
            outs = [self._check(a, follow, bound) for a in node.alts]
            return {v: c for v, c in outs[0].items() if all(o.get(v) is c for o in outs[1:])}
        if isinstance(node, Bind):
            return {**bound, node.var: node.cls}
        if isinstance(node, Ref):
            assert bound.get(node.var) is node.cls, f"Ref {node.var} not bound to {node.cls.name} on every path"
        return bound

    # Exact statistics. Choices are independent draws, so an expectation over
    # stories is a sum over nodes weighted by the probability of reaching them.

    @lru_cache(maxsize=None)
    def expected_counts(self, node=None) -> dict:
        """E[number of times each word is written] by `node` (the whole story by default)."""
        node = self.root if node is None else node
        if isinstance(node, Lit):
            out = {}
            for w in node.toks:
                if w not in '.,!?"':
                    out[w] = out.get(w, 0.0) + 1.0
            return out
        if isinstance(node, (Word, Ref)):
            # A Ref repeats its Bind, and which word was bound is independent of
            # whether this Ref is reached, so its marginal is the class distribution.
            cls = node.cls if isinstance(node, Ref) else node
            return dict(zip(cls.words, cls.probs))
        out = {}
        parts = [(1.0, k) for k in node.kids] if isinstance(node, Seq) else zip(node.probs, node.alts)
        for p, k in parts:
            for w, e in self.expected_counts(k).items():
                out[w] = out.get(w, 0.0) + p * e
        return out

    @lru_cache(maxsize=None)
    def entropy(self, node=None) -> float:
        """Entropy of the choices made inside `node`. The grammar is unambiguous, so for the
        root this is the entropy of the story distribution itself."""
        node = self.root if node is None else node
        if isinstance(node, (Lit, Ref)):
            return 0.0
        if isinstance(node, Word):
            return -sum(p * lp for p, lp in zip(node.probs, node.logp))
        if isinstance(node, Seq):
            return sum(self.entropy(k) for k in node.kids)
        return sum(p * (self.entropy(a) - lp) for p, lp, a in zip(node.probs, node.logp, node.alts))

    def parse(self, text: str, lenient: bool = False) -> _State | None:
        """The unique derivation of `text` (picks, log-probability), or None.

        lenient: a name the story repeats may be any name of its class (the log-probability
        then no longer means anything); everything else, surface form included, must hold.
        """
        text = text.strip()
        toks = tokenize(text)
        st = _State(lenient)
        if self.root.parse(toks, 0, st) != len(toks) or render(toks) != text:
            return None
        return st

    def valid_prefix(self, text: str) -> float:
        """Share of the text's tokens in the longest prefix the grammar can continue (0.0 for no tokens).

        Tokens only: capitals and spacing are not checked, so that one slip of surface
        form does not zero the rest; any other character ("1", ";", "é") ends the prefix. A text that stops
        early but is right so far scores 1.0.
        """
        toks = [t.lower() for t in _TOKEN_OR_JUNK.findall(text)]
        if not toks:
            return 0.0
        st = _State()
        end = self.root.parse(toks, 0, st)
        return (st.stop if end < 0 else end) / len(toks)


@lru_cache(maxsize=1)
def _grammar() -> Grammar:
    return Grammar()


# ---------------------------------------------------------------------------

class StoryWorld:
    """The story distribution: sampling, exact log-probabilities and exact word statistics."""

    def __init__(self) -> None:
        self.g = _grammar()  # built and checked once per process

    def sample(self, n: int, seed: int) -> list[str]:
        return [text for text, _ in self.sample_with_logprob(n, seed)]

    def sample_with_logprob(self, n: int, seed: int) -> list[tuple[str, float]]:
        """Stories are drawn one after another from one stream, so sample(n, s)[:k] == sample(k, s)."""
        r = random.Random(seed).random

        def pick(node):
            return bisect_right(node.cum, r())

        out = []
        for _ in range(n):
            toks, st = [], _State()
            self.g.root.gen(pick, toks, st)
            out.append((render(toks), st.lp))
        return out

    def logprob(self, text: str) -> float | None:
        """Exact natural-log probability; surrounding whitespace is ignored."""
        st = self.g.parse(text)
        return None if st is None else st.lp

    def is_valid(self, text: str) -> bool:
        return self.g.parse(text) is not None

    def is_grammatical(self, text: str) -> bool:
        """is_valid, except that a repeated name may be any name of its class. Pronouns must
        still agree: the grammar encodes them by structure, not by a repeated name."""
        return self.g.parse(text, lenient=True) is not None

    def valid_prefix(self, text: str) -> float:
        return self.g.valid_prefix(text)

    def derivation(self, text: str) -> list[int] | None:
        """The choices (alternative or word indices, in order) that produce `text`."""
        st = self.g.parse(text)
        return None if st is None else st.picks

    def replay(self, picks: list[int]) -> str:
        """The story a list of choices produces: the inverse of derivation()."""
        it = iter(picks)
        toks = []
        self.g.root.gen(lambda node: next(it), toks, _State())
        return render(toks)

    def entropy_per_story(self) -> float:
        return self.g.entropy()

    def expected_words_per_story(self) -> float:
        return sum(self.g.expected_counts().values())

    def unigram(self) -> dict[str, float]:
        counts = self.g.expected_counts()
        total = sum(counts.values())
        return {w: e / total for w, e in sorted(counts.items(), key=lambda kv: -kv[1])}

    def rare_words(self, max_prob: float = DEFAULT_RARE_MAX_PROB) -> dict[str, float]:
        return {w: p for w, p in self.unigram().items() if p < max_prob}
