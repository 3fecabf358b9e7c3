"""The offline demo corpus: synthetic children's stories in the spirit of TinyStories.

A small grammar of story plots (a lost toy, a new friend, sharing, a fear, a trip, making
something) is filled with names, animals, objects, places, foods and feelings drawn from a
seeded ``random.Random``, so the same seed always gives the same bytes. It is varied enough
that BPE learns a real vocabulary and a small LM visibly learns grammar and story structure,
but it is a demo of the pipeline, not a substitute for real data such as TinyStories.

Templates use ``{slot}`` for a value of the story (``{name}``, ``{he}``, ``{thing}``...) or a
word list (``{animal}``, drawn anew each time), and ``{a|b|c}`` for a random alternative.
"""

from __future__ import annotations

import logging
import os
import random
import re
from typing import Iterator

from scratchlm.fileio import atomic_open
from scratchlm.progress import progress_bar
from scratchlm.settings import END_OF_TEXT

log = logging.getLogger(__name__)

GIRL_NAMES = (
    "Lily", "Mia", "Emma", "Sara", "Anna", "Lucy", "Ella", "Zoe", "Ava", "Ruby", "Rosa", "Nora",
    "Maya", "Ivy", "Lena", "Hana", "Amara", "Priya", "Mei", "Fatima", "Olga", "Greta", "Ingrid",
    "Chloé", "Zoë", "Amélie", "Noémie", "Renée", "Inès", "Léa", "Sofía", "Lucía", "María", "Begoña",
    "Małgorzata", "Åsa", "Björk", "Jülide", "Ayşe", "Tuğba", "Dörte", "Siân", "Aoife", "Niamh",
)
BOY_NAMES = (
    "Tom", "Ben", "Max", "Sam", "Leo", "Jack", "Tim", "Finn", "Noah", "Liam", "Omar", "Ravi",
    "Kenji", "Yusuf", "Pablo", "Hugo", "Felix", "Oscar", "Theo", "Arjun", "Kofi", "Ivan", "Lars",
    "José", "Andrés", "Iñigo", "Joaquín", "François", "Jérôme", "Loïc", "Søren", "Björn", "Jürgen",
    "Łukasz", "Çelik", "Mehmet", "Ødin", "Tomás", "Seán", "Nicolás", "Raphaël", "Émile",
)
PET_NAMES = (
    "Spot", "Fluffy", "Max", "Bella", "Coco", "Pip", "Sunny", "Button", "Pepper", "Biscuit",
    "Bubbles", "Whiskers", "Ziggy", "Nibbles", "Daisy", "Rocky", "Luna", "Olive", "Peanut", "Crème",
)
ANIMALS = (
    "cat", "dog", "bunny", "bird", "duck", "frog", "mouse", "bear", "fox", "owl", "turtle", "lion",
    "pig", "cow", "horse", "sheep", "goat", "squirrel", "puppy", "kitten", "fish", "butterfly",
    "elephant", "monkey", "penguin", "giraffe", "hedgehog", "deer", "ladybug", "snail", "tiger",
    "zebra", "kangaroo", "koala", "panda", "dolphin", "whale", "crab", "octopus", "parrot", "robin",
    "chicken", "goose", "swan", "beaver", "raccoon", "badger", "otter", "seal", "camel", "donkey",
    "pony", "lamb", "chick", "spider", "bee", "ant", "dragonfly", "crocodile", "hippo", "rhino",
    "wolf", "moose", "bat", "worm", "caterpillar", "flamingo", "peacock", "mole", "lizard", "dragon",
)
OBJECTS = (
    "ball", "kite", "teddy bear", "doll", "toy car", "book", "crayon", "balloon", "drum", "shell",
    "rock", "stick", "blanket", "boat", "train", "robot", "puzzle", "hat", "scarf", "shoe", "bucket",
    "shovel", "flower", "ring", "key", "box", "map", "lamp", "whistle", "feather", "jar", "basket",
    "bell", "umbrella", "picture", "necklace", "button", "pillow", "spoon", "sock", "marble",
    "guitar", "trumpet", "flute", "piano", "bicycle", "wagon", "sled", "swing", "jump rope", "yo-yo",
    "top", "block", "sticker", "stamp", "coin", "pencil", "paintbrush", "notebook", "backpack",
    "lunchbox", "bottle", "cup", "bowl", "plate", "fork", "candle", "clock", "mirror", "comb", "brush",
    "bracelet", "crown", "wand", "cape", "mask", "costume", "tent", "rope", "ladder", "hammer",
    "flashlight", "telescope", "magnet", "compass", "treasure chest", "seashell", "pebble", "acorn",
    "pinecone", "leaf", "snowball", "sandcastle", "paper boat", "toy train", "toy truck", "puppet",
)
ADJECTIVES = (
    "big", "small", "shiny", "soft", "old", "new", "pretty", "funny", "tiny", "round", "bright",
    "fluffy", "heavy", "special", "colorful", "sparkly", "smooth", "little", "warm", "strong",
    "gentle", "brave", "clever", "silly", "curious", "friendly", "kind", "quiet", "loud", "fast",
    "slow", "happy", "sleepy", "hungry", "wise", "young", "tall", "short", "fuzzy", "spotty",
    "striped", "bouncy", "wiggly", "shy", "proud", "lucky", "busy", "grumpy", "playful", "jolly",
    "huge", "giant", "cozy", "muddy", "dusty", "golden", "silver", "wooden", "magic", "beautiful",
)
COLORS = ("red", "blue", "green", "yellow", "pink", "purple", "orange", "white", "brown", "gold",
          "black", "gray", "silver", "violet", "turquoise", "beige")
PLACES = (
    "park", "garden", "forest", "beach", "house", "school", "farm", "lake", "hill", "town",
    "yard", "river", "zoo", "store", "library", "meadow", "playground", "kitchen", "castle", "café",
    "village", "pond", "field", "barn", "market", "cave", "island", "bakery", "jungle", "desert",
    "mountain", "valley", "museum", "circus", "harbor", "station", "orchard", "swamp", "attic",
    "treehouse", "campsite", "lighthouse", "bridge", "tower", "street", "playroom", "classroom",
    "backyard", "sea", "woods", "fair", "pool", "boat dock", "flower shop", "toy store", "post office",
)
HIDING_SPOTS = (
    "under the bed", "behind the sofa", "in the grass", "under a big leaf", "next to the tree",
    "in a box", "on the shelf", "inside the shoe", "under the table", "behind the door",
    "in the sand", "near the pond", "in the basket", "under a rock", "by the window",
)
FOODS = (
    "apple", "cookie", "cake", "sandwich", "banana", "orange", "pie", "cupcake", "candy",
    "ice cream", "soup", "bread", "muffin", "pear", "crêpe", "piñata cake", "jalapeño taco",
    "pizza", "carrot", "grape", "strawberry", "pancake", "honey bun", "cheese", "croissant",
    "peach", "plum", "cherry", "lemon", "watermelon", "pumpkin pie", "biscuit", "waffle", "noodle",
    "rice ball", "dumpling", "pretzel", "donut", "lollipop", "jelly", "yogurt", "salad", "taco",
    "burrito", "sushi roll", "bagel", "cracker", "popcorn", "blueberry", "mango", "kiwi", "crème brûlée",
)
FEELINGS_GOOD = ("happy", "glad", "proud", "excited", "calm", "thankful", "cheerful", "joyful",
                 "delighted", "hopeful", "safe", "warm", "brave", "loved", "peaceful", "amazed")
FEELINGS_BAD = ("sad", "scared", "angry", "worried", "lonely", "upset", "grumpy", "nervous", "tired",
                "frightened", "confused", "unhappy", "jealous", "cross", "gloomy", "afraid", "shy")
FEARS = (
    "the dark", "thunder", "the big dog next door", "the deep water", "bees", "the loud truck",
    "the tall slide", "the old tree at night", "the vacuum cleaner", "strange noises",
)
GAMES = (
    "tag", "hide and seek", "catch", "ball", "pretend", "jump rope", "with blocks",
    "in the sand", "with the kite", "in the mud", "with bubbles", "in the leaves",
)
MAKE_THINGS = (
    "a sandcastle", "a cake", "a card", "a kite", "a tower", "a boat", "a picture", "a hat",
    "a bird house", "a snowman", "a fort", "a necklace", "a crown", "a paper plane", "a sock puppet",
)
WEATHER = ("sunny", "rainy", "windy", "cold", "warm", "snowy", "cloudy", "bright")
TIMES = ("One day", "One morning", "One sunny day", "Once upon a time", "Long ago", "One evening",
         "One afternoon", "On a cold night", "One summer day", "A long time ago", "In a small town")
PLOT_TIMES = ("One day", "One morning", "The next day", "Yesterday", "After lunch", "On Saturday",
              "One afternoon", "Later that week", "That evening", "One windy day")
ACTIONS = (
    "ran", "jumped", "danced", "sang a song", "climbed a tree", "hopped", "skipped", "swam", "rolled in the grass",
    "splashed in a puddle", "built a tower", "read a book", "drew a picture", "laughed", "spun around", "waved",
    "hummed a tune", "took a nap", "chased a butterfly", "dug a hole", "picked flowers", "counted the clouds",
    "looked at the stars", "played a game", "ate a snack", "told a joke", "found a shiny coin", "made a wish",
    "jumped over a log", "ran up the hill", "slid down the slide", "blew bubbles", "played the drum",
    "flew a kite", "fed the ducks", "watered the plants", "cleaned up the toys", "baked some bread",
)
ADVERBS = ("quickly", "slowly", "happily", "quietly", "loudly", "carefully", "gently", "proudly", "bravely",
           "softly", "eagerly", "merrily", "sleepily", "all morning", "all day long", "again and again")
PREPOSITIONS = ("near", "behind", "under", "next to", "across", "around", "inside", "beside", "in front of")
NUMBERS = ("two", "three", "four", "five", "six", "seven", "ten", "many", "lots of", "some")
EXCLAIMS = ("Wow", "Look", "Oh no", "Yay", "Hooray", "Hmm", "Oh", "Hello", "Come on", "Ta-da", "Olé")
SCENES = (
    "The {adj} {animal} {action} {adverb} {prep} the {place}.",
    "The sun was {shining|warm|high in the sky} and the birds were {singing|chirping}.",
    "{name} {action} {adverb}.",
    "There were {number} {color} flowers {prep} the {place}.",
    "The wind {blew|whistled|howled} through the {trees|grass|window|fence}.",
    "{name} thought about {his} {parent} and the {adj} {food} at home.",
    "\"{exclaim}, {what {a adj} day|I see {a animal}|this is so much fun|I love the {place}}!\" {name} {said}.",
    "Suddenly, {a adj} {animal} {action}.",
    "{friend} had {a color} {object} and {a adj} {food}.",
    "It was {weather} outside, so {name} wore {his} {color} {hat|coat|boots|scarf|sweater}.",
    "{name} {smiled|giggled|nodded|clapped|blinked}. {He} felt {good}.",
    "{He} {heard|saw|smelled} something {strange|funny|nice|new} {prep} the {place}.",
)
SAID = ("said", "asked", "shouted", "whispered", "cried", "laughed", "replied", "yelled", "smiled")
PARENTS = ("mom", "dad", "grandma", "grandpa", "aunt", "uncle", "teacher", "big sister", "big brother")
LISTS = {
    "animal": ANIMALS, "object": OBJECTS, "adj": ADJECTIVES, "color": COLORS, "place": PLACES,
    "spot": HIDING_SPOTS, "food": FOODS, "good": FEELINGS_GOOD, "bad": FEELINGS_BAD, "game": GAMES,
    "weather": WEATHER, "said": SAID, "action": ACTIONS, "adverb": ADVERBS, "prep": PREPOSITIONS,
    "number": NUMBERS, "exclaim": EXCLAIMS,
}
# Made-up names from syllables (Talimo, Brenéa...): many rare words, as in real stories.
NAME_ONSETS = ("b", "br", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "j", "ch", "sh",
               "th", "w", "", "", "")
NAME_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "ai", "ea", "oo", "ie", "é", "ö", "ü", "ó")
NAME_CODAS = ("", "", "", "n", "l", "s", "r", "m", "th", "x")
PRONOUNS = {  # he, him, his
    "girl": ("she", "her", "her"),
    "boy": ("he", "him", "his"),
}

OPENINGS = (
    "{time}, there was {a hero_desc} named {name}.",
    "{time}, {a hero_desc} named {name} lived in {a adj} house near the {home}.",
    "{name} was {a hero_desc}. {He} loved to play {game}.",
    "{time}, {name} woke up early. It was a {weather} day.",
    "There once was {a hero_desc} called {name}. {He} had {a adj} {pet_kind} named {pet}.",
)
PLOTS = {
    "lost": (
        "{name} had {a favorite} {thing}. {He} took it everywhere {he} went.",
        "{time2}, {name} went to the {place} with {his} {thing}. {He} played {game} all day.",
        "When {he} got home, the {thing} was gone! {name} felt very {bad}.",
        "\"Where is my {thing}?\" {name} {said}. {He} looked {spot} and {spot}, but it was not there.",
        "{friend} saw {him} {crying|looking sad|sitting alone}. \"What is wrong?\" {fhe} asked.",
        "\"I lost my {thing},\" said {name}. \"Do not worry, I will help you,\" said {friend}.",
        "They looked {spot}. Then {friend} {saw|found|spotted} something {color} {spot}.",
        "It was the {thing}! {name} {hugged|thanked} {friend}. \"Thank you!\" {he} said.",
        "From that day on, {name} kept {his} {thing} in a safe place.",
    ),
    "friend": (
        "{time2}, {name} went to the {place}. {He} saw {a newcomer} {sitting|standing|hiding} all alone.",
        "The {newcomer} looked {bad}. {name} wanted to say hello, but {he} was a little shy.",
        "{name} took a deep breath and walked over. \"Hi, I am {name}. Do you want to play?\" {he} asked.",
        "The {newcomer} smiled. \"Yes, please! My name is {friend},\" {fhe} said.",
        "They played {game} and {game} until the sun went down.",
        "\"You are my best friend,\" said {friend}. {name} felt {good} inside.",
        "Every day after that, {name} and {friend} met at the {place} to play.",
    ),
    "share": (
        "{name} had {a adj} {food}. It looked so {yummy|good|sweet|tasty}!",
        "{friend} came over and looked at the {food}. \"Can I have some?\" {fhe} asked.",
        "\"No, it is mine!\" {name} {said}. {friend} felt {bad} and walked away.",
        "{His} {parent} saw what happened. \"{name}, sharing makes everyone {good},\" {parent_he} said.",
        "{name} thought about it. {He} broke the {food} in two and ran to {friend}.",
        "\"Here, this is for you,\" {he} said. {friend} smiled a big smile.",
        "They ate the {food} together under {a color} tree. It tasted even better when they shared it.",
    ),
    "fear": (
        "{name} was scared of {fear}. Every time {he} thought about it, {he} felt {bad}.",
        "{time2}, {name} had to go near {fear}. {His} legs were shaking.",
        "\"I am too scared,\" {name} {said} to {his} {parent}.",
        "{His} {parent} gave {him} a hug. \"Being brave means you can be scared and try anyway,\" {parent_he} said.",
        "{name} held {his} {thing} tight and took one small step, then another.",
        "It was not so bad after all! {name} felt {good} and {good}.",
        "Now {name} is not scared of {fear} anymore, and {he} tells {his} friends to be brave too.",
    ),
    "trip": (
        "{time2}, {name} and {friend} went on a trip to the {place}. The sky was {weather}.",
        "They saw {a animal}, {a animal} and {a adj} {animal}. \"Look!\" {name} {said}.",
        "Then it started to rain. The {place} was {wet|muddy|dark} and they could not find the way home.",
        "\"What do we do now?\" asked {friend}. {name} thought hard.",
        "{name} remembered the {color} {object} near the path. \"Follow me!\" {he} said.",
        "They walked and walked until they saw the {home}. They were home!",
        "{His} {parent} made them {a food} and they told {parent_him} all about their trip.",
    ),
    "make": (
        "{name} wanted to make {make} for {his} {parent}.",
        "{He} got some {color} paper, glue and {a object}. {He} worked very hard.",
        "But the {make_word} fell apart! {name} was {bad}. \"It is all broken,\" {he} {said}.",
        "{friend} came to help. \"Let's try again together,\" {fhe} said.",
        "This time they went slowly and were very careful. The {make_word} was {adj} and {adj}.",
        "{name} gave it to {his} {parent}. \"I love it!\" {parent_he} said, and gave {him} a big hug.",
        "{name} learned that it is okay to ask for help.",
    ),
}
ENDINGS = (
    "The end.",
    "{name} smiled. It was the best day ever.",
    "That night, {name} went to sleep {good} and dreamed about the {place}.",
    "And {name} lived {happily ever after|happily with {his} {pet_kind}}.",
    "{name} and {friend} were {good}. They knew they would always be friends.",
    "",
)
SLOT = re.compile(r"\{([^{}]*)\}")


def _made_up_name(rng: random.Random) -> str:
    """``Talimo``, ``Shéra``...: two or three syllables."""
    syllables = (rng.choice(NAME_ONSETS) + rng.choice(NAME_VOWELS) for _ in range(rng.choice((2, 2, 2, 3))))
    return ("".join(syllables) + rng.choice(NAME_CODAS)).capitalize()


def _article(phrase: str) -> str:
    """``_article('apple') == 'an apple'``."""
    return ("an " if phrase[0] in "aeiouAEIOU" else "a ") + phrase


class _Story:
    """The characters and things of one story, and the template expander that uses them."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        sex = rng.choice(("girl", "boy"))
        friend_sex = rng.choice(("girl", "boy"))
        he, him, his = PRONOUNS[sex]
        fhe, fhim, _ = PRONOUNS[friend_sex]
        parent = rng.choice(PARENTS)
        parent_sex = "girl" if parent in ("mom", "grandma", "aunt", "big sister") else "boy"
        hero_kind = sex if rng.random() < 0.6 else rng.choice(ANIMALS)
        name = friend = self._name(sex)
        while friend == name:
            friend = self._name(friend_sex)
        self.slots = {
            "name": name,
            "friend": friend,
            "he": he, "him": him, "his": his, "He": he.capitalize(), "His": his.capitalize(),
            "fhe": fhe, "fhim": fhim,
            "hero_desc": f"{rng.choice(ADJECTIVES)} {hero_kind}",
            "newcomer": rng.choice(("girl", "boy", "new kid") + ANIMALS),
            "parent": parent,
            "parent_he": PRONOUNS[parent_sex][0], "parent_him": PRONOUNS[parent_sex][1],
            "pet": rng.choice(PET_NAMES), "pet_kind": rng.choice(ANIMALS),
            "thing": rng.choice(OBJECTS), "favorite": rng.choice(("favorite", "special", "old", "new")),
            "home": rng.choice(PLACES), "place": rng.choice(PLACES), "fear": rng.choice(FEARS),
            "make": (make := rng.choice(MAKE_THINGS)), "make_word": make.split(" ", 1)[1],
            "time": rng.choice(TIMES), "time2": rng.choice(PLOT_TIMES),
        }

    def _name(self, sex: str) -> str:
        if self.rng.random() < 0.3:
            return _made_up_name(self.rng)
        return self.rng.choice(GIRL_NAMES if sex == "girl" else BOY_NAMES + PET_NAMES)

    def _fill(self, match: re.Match) -> str:
        key = match.group(1)
        if "|" in key:
            return self.expand(self.rng.choice(key.split("|")))
        if key.startswith("a "):
            return _article(self.expand("{" + key[2:] + "}"))
        if key in self.slots:
            return self.slots[key]
        return self.rng.choice(LISTS[key])

    def expand(self, template: str) -> str:
        """Fill one template: story slots, word lists, ``{a|b}`` choices and ``{a slot}`` articles."""
        while "{" in template:  # repeat: a choice like {x|y {his} z} is complete once its inner slots are
            template = SLOT.sub(self._fill, template)
        return template

    def text(self) -> str:
        """The whole story: an opening, one plot with some scenery, an ending, in paragraphs."""
        rng = self.rng
        plot = PLOTS[rng.choice(sorted(PLOTS))]
        # Dropping a middle sentence now and then varies the rhythm without breaking the plot.
        body = [line for i, line in enumerate(plot) if i in (0, len(plot) - 1) or rng.random() > 0.12]
        for _ in range(rng.choice((0, 1, 1, 2, 3))):  # scenery between plot steps
            body.insert(rng.randrange(1, len(body)), rng.choice(SCENES))
        sentences = [rng.choice(OPENINGS), *body, rng.choice(ENDINGS)]
        paragraphs, current = [], []
        for sentence in filter(None, (self.expand(s) for s in sentences)):
            current.append(sentence)
            if rng.random() < 0.3:  # paragraph breaks at random, as in TinyStories
                paragraphs.append(" ".join(current))
                current = []
        paragraphs.append(" ".join(current))
        return "\n\n".join(p for p in paragraphs if p)


def iter_stories(*, seed: int, split: str = "train") -> Iterator[str]:
    """An endless, deterministic stream of stories; each split has its own stream.

    >>> first = next(iter_stories(seed=1))
    >>> first == next(iter_stories(seed=1)) != next(iter_stories(seed=1, split="valid"))
    True
    """
    rng = random.Random(f"scratchlm-demo:{seed}:{split}")  # str seeds hash with SHA-512: stable across runs
    while True:
        yield _Story(rng).text()


def write_demo_corpus(path: str | os.PathLike, *, seed: int, split: str, size_mb: float,
                      special_token: str = END_OF_TEXT) -> int:
    """Write stories separated by ``special_token`` lines until ``size_mb`` MiB; return the byte count."""
    if size_mb <= 0:
        raise ValueError(f"{path}: size_mb must be positive, got {size_mb}")
    target = int(size_mb * 2**20)
    written = 0
    with progress_bar(f"demo {split}", total=target) as progress, atomic_open(path, "w", encoding="utf-8") as out:
        for story in iter_stories(seed=seed, split=split):
            document = f"{story}\n{special_token}\n"
            out.write(document)
            size = len(document.encode("utf-8"))
            written += size
            progress.update(size)
            if written >= target:
                break
    log.info("wrote %s: %d bytes of demo stories (seed %d, split %s)", path, written, seed, split)
    return written
