"""A deterministic generator of TinyStories-style children's stories.

Every story is built by a chain of random decisions (the hero's name, the plot,
which phrasing each sentence uses, which toy, place, animal or food fills each
slot...).  The generator records the natural-log probability of every decision
it makes, so each `Story` carries ``logprob`` = log P(all the choices made).

Why that matters: the *entropy floor*.  A perfect language model of this
generator could not predict the stories better than the generator's own
randomness allows, so its average loss is at least the entropy of the process::

    floor  =  sum over stories of (-logprob)  /  sum of GPT-2 tokens (+1 <|endoftext|> each)

in nats per token (the same unit as PyTorch's cross-entropy loss).  It is an
upper bound on the true floor when two different choice paths can write the same
text; we keep that rare by using lists without duplicates and making every choice
visible in the text.  A model whose validation loss approaches the floor has
learned the generator; a model whose *training* loss falls far below it while
validation loss rises has memorised its training stories (overfitting).

Design rules:
* Only `rng.random()` is used (plus our own choice code on top), so the same seed
  gives the same stories on every machine and Python version.
* Story i of `generate_stories(n, seed)` depends only on (seed, i), so the first
  100 stories of a split are the same whether you ask for 100 or 10,000.
* Sentences are small templates: ``{var}`` inserts a story variable (``{he}`` is
  "she" or "he"), ``{@list}`` picks a fresh word from a list, ``[a|b|c]`` picks
  one alternative uniformly (``[a|]`` = optional).  Capital letters at sentence
  starts and "a"/"an" are fixed afterwards, deterministically (no randomness).
* Story variables (the friend, the pet, the lost toy...) are chosen lazily, the
  first time a sentence writes them, so a choice that never reaches the text is
  never paid for.
* Many small choices with big lists: 100 training stories meet only a fraction of
  the names, toys, places and animals (a model memorises them and fails on new
  ones); 10,000 stories meet every entry many times (a model can generalise).
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

__all__ = ["Story", "PLOTS", "write_story", "generate_stories", "vocabulary"]


@dataclass(frozen=True)
class Story:
    text: str  # the story, single paragraph, no "<|endoftext|>" inside
    logprob: float  # natural-log probability of all random choices made for it (<= 0)
    plot: str  # which plot template wrote it, one of PLOTS


def _words(s: str) -> tuple[str, ...]:
    """Split a comma-separated word list (entries may contain spaces)."""
    return tuple(" ".join(w.split()) for w in s.split(",") if w.strip())


# ---------------------------------------------------------------- word lists
# Big lists = many bits per slot: 100 training stories cannot cover them, 10,000 can.
GIRLS = _words("""Lily, Sue, Mia, Anna, Emma, Lucy, Sara, Amy, Zoe, Ella, Mary, Jane, Kate, Rose, Ruby, Daisy,
Molly, Sophie, Chloe, Grace, Ava, Olivia, Emily, Hannah, Lola, Nora, Alice, Clara, Ivy, Luna, Maya, Nina,
Rosie, Julia, Sally, Polly, Betty, Jenny, Katie, Megan, Amber, Holly, Hazel, Stella, Bella, Mila, Leah, Abby,
Jess, Tina, Wendy, Fiona, Laura, Eva, Iris, Violet, Poppy, Penny, Susie, Dora, Ellie, Isla, Freya, Millie,
Evie, Lottie, Matilda, Phoebe, Ruth, Tess, Kim, Lisa, Anne, Beth, Gemma, Heidi, Cora, June, Nell, Pippa""")
BOYS = _words("""Tom, Tim, Ben, Max, Sam, Jack, Leo, Finn, Jake, Luke, Noah, Liam, Owen, Ryan, Adam, Alex,
Charlie, Danny, Eli, Felix, George, Harry, Henry, Jacob, James, Joe, Kevin, Leon, Lucas, Mark, Mike, Nick,
Oliver, Oscar, Paul, Pete, Ray, Ethan, Roy, Simon, Teddy, Theo, Toby, Victor, Dylan, Zack, Billy, Bobby,
Eddie, Freddy, Gus, Hugo, Ivan, Jimmy, Kyle, Milo, Ned, Otis, Rex, Timmy, Archie, Arthur, Benny, Caleb, Dan,
Ed, Frank, Fred, Harvey, Isaac, Jasper, Joey, Louis, Matt, Neil, Peter, Reggie, Stan, Tony, Walter""")
# (display name, name after "his/her", gender)
PARENTS = (("Mom", "mom", "girl"), ("Dad", "dad", "boy"), ("Grandma", "grandma", "girl"),
           ("Grandpa", "grandpa", "boy"))

_LISTS_SRC = dict(
    obj="""ball, doll, kite, teddy bear, toy car, toy train, toy truck, robot, puzzle, drum, whistle, rocket,
    toy boat, toy plane, marble, rattle, puppet, jump rope, hula hoop, balloon, crayon, paintbrush, sticker,
    scooter, wagon, sled, hat, scarf, mitten, sock, shoe, boot, ribbon, necklace, bracelet, ring, crown, wand,
    cape, mask, book, storybook, notebook, pencil, seashell, pebble, feather, button, coin, key, bell, lamp,
    flashlight, blanket, pillow, cup, bowl, spoon, basket, bucket, shovel, backpack, lunchbox, umbrella, map,
    clock, watch, camera, guitar, flute, toy piano, xylophone, tambourine, harmonica, trumpet, violin, banjo,
    kazoo, toy dinosaur, teapot, jar, box, medal, trophy, badge, glove, jacket, sweater, dress, belt, bag,
    purse, comb, hairbrush, mirror, compass, magnet, telescope, spinning top, building block, toy horse,
    rocking horse, toy soldier, stuffed bunny, rubber duck, beach ball, snow globe, music box, jewelry box,
    piggy bank, picture frame, toy sword, shield, helmet, tiara, paper boat, paper crown, toy phone, radio,
    keychain, locket, hair clip, headband, pinwheel, lantern, toy tractor, fire truck, race car, toy bus,
    spaceship, toy castle, dollhouse, marker, eraser, ruler, sketchbook, diary, postcard, slipper, raincoat,
    teacup, puzzle box, bean bag, glitter pen, toy drum, rubber ball, rain boot, sun hat, fishing rod, paper
    kite, toy rabbit, toy elephant, toy lion, toy giraffe, stuffed owl, stuffed cat, toy fire engine, toy
    airplane, toy rocket, wind chime, sand bucket, kaleidoscope, birdhouse, hobby horse, wooden spoon, tea
    set, train set, bubble wand, toy duck, toy kitchen, cowboy hat, pirate hat, party hat, bow tie, toy
    guitar, drumstick, water bottle, jigsaw puzzle, marble jar, toy robot, walkie talkie, clay pot, lunch bag,
    pencil case, paint box, crayon box, sticker book, coloring book, picture book, toy shovel, seed packet""",
    oadj="""shiny, soft, old, new, tiny, little, big, small, round, fluffy, bright, pretty, fancy, special,
    sparkly, smooth, bumpy, heavy, long, short, warm, cozy, squishy, silly, funny, magic, lovely, beautiful,
    dusty, clean, striped, spotted, wooden, plastic, fuzzy, furry, glittery, shimmery, tall, thin, huge,
    giant, wobbly, squeaky, noisy, precious, cute, neat, worn, patched, painted, polished, velvet, silky,
    woolly, bouncy, crinkly, floppy, handmade, secret, glowing, twinkly, colorful, plain, curly, rusty, lumpy,
    brand new, ancient, dotted, checkered, jingly, wiggly, chunky, sturdy, tiny little, clever""",
    colour="""red, blue, green, yellow, pink, purple, orange, white, black, brown, gray, silver, gold, teal,
    navy, tan, violet, lavender, crimson, turquoise, cream, lime, mint, amber, coral, scarlet, indigo, maroon,
    beige, peach, sky blue, dark green, rosy pink, pale yellow, olive, copper, bronze, lilac, plum, emerald,
    ivory, cherry red, lemon yellow, ocean blue, sandy brown""",
    trait="""kind, brave, curious, happy, cheerful, clever, gentle, shy, friendly, playful, funny, smart,
    sweet, quiet, busy, helpful, polite, honest, caring, lively, thoughtful, patient, silly, bold, jolly,
    sleepy, careful, creative, cheeky, chatty, bouncy, giggly, dreamy, eager, energetic, generous, good,
    loving, merry, noisy, tidy, wise, sunny, hopeful, calm, cute, daring, lucky, nice, plucky, proud, quick,
    sensible, sporty, strong, witty, adventurous, cheery, cuddly, fearless, mischievous, spirited, hardworking""",
    placew="""park, beach, zoo, farm, forest, woods, lake, river, pond, meadow, hill, mountain, town square,
    library, museum, market, bakery, playground, field, barn, castle, cave, island, harbor, lighthouse,
    jungle, circus, fair, carnival, aquarium, swimming pool, orchard, campsite, ice rink, candy shop, toy
    store, pet shop, flower shop, post office, fire station, train station, airport, theater, cafe, treehouse,
    greenhouse, pumpkin patch, seashore, waterfall, creek, ranch, stable, duck pond, rose garden, pier,
    boardwalk, schoolyard, school, bookshop, ice cream shop, mill, windmill, bridge, valley, picnic area,
    nature trail, flower garden, skate park, soccer field, hospital, science center, art museum, bus stop,
    village, city, toy shop, berry farm, sand dunes, ski hill, apple orchard""",
    animalw="""dog, puppy, cat, kitten, bird, duck, duckling, frog, rabbit, bunny, mouse, squirrel, fox, bear,
    owl, horse, pony, cow, pig, sheep, lamb, goat, hen, chick, rooster, turtle, fish, butterfly, bee, ladybug,
    snail, worm, ant, deer, fawn, hedgehog, raccoon, skunk, beaver, otter, seal, penguin, dolphin, whale,
    crab, octopus, starfish, monkey, elephant, giraffe, lion, tiger, zebra, hippo, kangaroo, koala, panda,
    parrot, peacock, swan, goose, crow, robin, sparrow, pigeon, eagle, bat, lizard, snake, camel, donkey,
    llama, moose, wolf, badger, mole, goldfish, hamster, caterpillar, dragonfly, firefly, grasshopper,
    chipmunk""",
    petname="""Spot, Buddy, Fluffy, Whiskers, Patch, Coco, Pepper, Biscuit, Peanut, Muffin, Snowball, Ginger,
    Bingo, Rusty, Pickles, Cookie, Noodle, Button, Bubbles, Shadow, Socks, Sparky, Lucky, Honey, Boots,
    Mittens, Fuzzy, Scout, Ziggy, Waffles, Jelly, Nugget, Toffee, Pebbles, Smudge, Domino""",
    pet="dog, cat, puppy, kitten, bunny, hamster, guinea pig, parrot, turtle, ferret",
    foodw="""apples, cookies, grapes, strawberries, cherries, bananas, carrots, peas, berries, muffins,
    cupcakes, pancakes, waffles, crackers, pretzels, noodles, sandwiches, nuts, peanuts, raisins, oranges,
    pears, peaches, plums, blueberries, raspberries, cheese, bread, soup, pie, cake, pizza, popcorn, candy,
    jam, honey, ice cream, yogurt, rice, pasta, corn, beans, potatoes, tomatoes, cucumbers, melon, watermelon,
    pumpkin pie, apple pie, cereal, toast, eggs, biscuits, donuts, jelly, chocolate, marshmallows, lollipops,
    gumdrops, carrot cake, cinnamon rolls, fruit salad""",
    happyw="""happy, glad, proud, excited, joyful, cheerful, thankful, calm, delighted, pleased, grateful,
    relieved, hopeful, amazed, surprised, jolly, peaceful, warm inside, thrilled, merry""",
    sadw="""sad, upset, worried, lonely, grumpy, cross, angry, mad, frustrated, confused, gloomy, unhappy,
    sorry, annoyed, cranky, glum, hurt, blue, down, mopey, miserable, sulky, teary""",
    scaredw="scared, afraid, nervous, worried, frightened, shaky, jumpy, uneasy",
    weather="""sunny, rainy, windy, cloudy, snowy, foggy, warm, cold, chilly, bright, hot, cool, breezy,
    misty, frosty, gray, quiet, lovely, beautiful, busy, sleepy, stormy, dark, dull, damp, fresh, golden,
    hazy, icy, mild, muggy, pleasant, still""",
    nice="sunny, warm, bright, lovely, beautiful, pleasant, clear, hot",
    time="morning, afternoon, evening, day",
    day="Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday",
    season="spring, summer, fall, winter",
    relative="""grandma, grandpa, aunt, uncle, cousin, neighbor, big sister, big brother, teacher, best
    friend, baby brother, little sister, babysitter, coach, nanny, godmother""",
    spot="""under the bed, behind the couch, in the closet, in the toy box, under the table, in the garden,
    behind the door, in the kitchen, on the shelf, in the bathtub, under the stairs, in the laundry basket,
    behind the curtains, in the car, under the pillow, in the attic, in the basement, on the porch, in the
    backyard, in the sandbox, under the slide, in the drawer, under the rug, in the garage, behind the shed,
    inside the dog house, under the sofa cushions, in the mailbox, behind the bookcase, in the washing
    machine, under the car seat, in the bread box, behind the fridge, in the pantry, under the bench, in the
    flower bed, in the hall closet, inside a boot, under the blanket, in the playhouse""",
    container="toy box, backpack, pocket, drawer, closet, bag, room, desk, wagon, basket",
    activity="""play outside, draw pictures, sing songs, dance, read books, build with blocks, ride {his}
    bike, paint, jump in puddles, climb trees, play with {his} {@obj}, look at the stars, bake with {his}
    {prel}, run in the grass, splash in the bath, dig in the sand, play dress up, make mud pies, chase
    butterflies, feed the ducks, play hide and seek, tell jokes, pick flowers, collect rocks, make forts, do
    puzzles, play the drums, blow bubbles, watch the clouds, help in the garden, fly {his} kite, swing on the
    swings, count the birds, play pretend, roll down hills, skip rope, visit the {@place}, hum little songs,
    make paper planes, play ball, build sand castles, look for bugs, ride {his} scooter, play in the snow,
    watch the trains, make snowmen, play with clay, write stories, listen to music, plant seeds, bake cakes,
    go fishing, play soccer, build towers, hunt for shells, play the piano, make necklaces, fly paper kites,
    splash in the pool, climb the jungle gym, look at picture books, race toy cars, sing in the bath, help
    {his} {prel} cook, play tag, draw with chalk, play with puppets, make sandcastles""",
    movew="ran, hurried, rushed, raced, dashed, skipped, walked, hopped, zoomed, jogged, trotted",
    sayw="said, called, shouted, whispered, cried",
    adverb="""gently, carefully, slowly, quietly, quickly, bravely, proudly, happily, eagerly, calmly, softly,
    nervously, patiently, neatly, lightly, cheerfully""",
    sadv="""happily, softly, quietly, gently, kindly, sweetly, calmly, loudly, proudly, cheerfully, politely,
    warmly, shyly, excitedly, brightly, firmly""",
    madv="quickly, slowly, happily, carefully, quietly, proudly, bravely, eagerly, swiftly, lightly, excitedly",
    smadv="happily, sweetly, kindly, warmly, shyly, proudly, brightly, softly",
    game="""tag, hide and seek, catch, hopscotch, pirates, house, school, chase, leapfrog, duck duck goose,
    follow the leader, pretend, ball, tea party, dress up, cops and robbers, marbles, jacks, freeze tag,
    treasure hunt, tic tac toe, musical chairs, hot potato, red rover, simon says, sardines, kick the can""",
    treew="""oak tree, pine tree, apple tree, willow tree, maple tree, cherry tree, palm tree, birch tree,
    lemon tree, peach tree, elm tree, fir tree""",
    tadj="big, tall, old, shady, little, huge, leafy, green, twisty, young",
    seat="bench, grass, steps, porch, blanket, rug, floor, big rock, swing, old log, stool, sofa",
    room="living room, kitchen, hall, dining room, bedroom, playroom, attic, garage, sunroom",
    num="three, five, ten",
    dur="a few days, a whole week, two days, three days, many days",
    ohno="Oh no, Oh dear, Uh oh, Oh my",
    # Macros: a single entry (so choosing it costs nothing) holding optional describing words.
    thing="[{@oadj} |][{@colour} |]{@obj}",
    place="[{@padj} |]{@placew}",
    animal="[{@aadj} |]{@animalw}",
    food="[{@fadj} |]{@foodw}",
    happy="[{@very} |]{@happyw}",
    sad="[{@very} |]{@sadw}",
    scared="[{@very} |]{@scaredw}",
    say="{@sayw}[ {@sadv}|]",
    move="{@movew}[ {@madv}|]",
    smile="{@smilew}[ {@smadv}|]",
    tree="[{@tadj} |]{@treew}",
    when="[One {@weather} {@time}|On a {@weather} {@day}|One {@season} {@time}|Early one {@weather} {@time}]",
    since="[From that day on|After that day|Ever since then|From then on]",
    very="very, so, really, a little, quite, a bit",
    suddenly="Suddenly, Just then, All at once, Then, Out of nowhere",
    padj="""busy, quiet, sunny, pretty, new, shady, noisy, colorful, huge, lovely, peaceful, green, muddy,
    sandy, famous, nearby, little, crowded, windy, magical""",
    aadj="""fluffy, tiny, little, big, brown, spotted, sleepy, hungry, funny, friendly, cute, shy, noisy,
    silly, furry, playful, young, gray, chubby, striped""",
    fadj="""yummy, tasty, sweet, fresh, warm, crunchy, juicy, sticky, soft, hot, cold, homemade, delicious,
    crispy, salty, spicy, chewy, gooey""",
    wow="Wow, Yay, Hooray, Ooh, Yippee, Look, Whee, Oh wow, Amazing, Cool",
    comfort="""Don't worry, It will be okay, I am here, Everything is fine, You are safe, Let's be brave
    together, We can fix this, Take a deep breath, I love you, It's all right""",
    cheer="""Keep trying, You can do it, Try again, Don't give up, I believe in you, Go slowly, Practice makes
    it easier, You are getting better, One more time, Be patient""",
    sorry="""I am sorry, I am so sorry, I was wrong, I did not mean it, Please forgive me, I feel bad, That
    was not nice of me""",
    thanks="Thank you, Thanks, Thank you so much, You are the best, That is so kind, How nice",
    smilew="smiled, grinned, laughed, giggled, beamed, chuckled",
    plant="""roses, daisies, tulips, sunflowers, lilies, poppies, violets, pansies, daffodils, bluebells,
    buttercups, marigolds, carrots, beans, pumpkins, tomatoes, strawberries, peas""",
    bloom="roses, daisies, tulips, sunflowers, lilies, poppies, violets, daffodils",
    drink="warm milk, hot cocoa, tea, soup, apple juice, lemonade",
    helpable="""bird, kitten, puppy, duckling, bunny, frog, squirrel, hedgehog, mouse, owl, chick, turtle,
    fawn, lamb, butterfly, goose, robin, chipmunk, fox cub, goat, sparrow, ladybug, snail, piglet, owlet,
    gosling, rabbit, mole, raccoon, toad""",
    fragile="""vase, lamp, teapot, cup, plate, bowl, mug, clock, jar, picture frame, snow globe, flower pot,
    birdhouse, music box, mirror, glass bird, sugar bowl, candle holder, lamp shade, cookie jar""",
    gift="""a card with {@colour} hearts, a cake with {@food}, a picture of a {@animal}, a necklace of
    {@colour} beads, a paper crown, a bunch of {@bloom}, a little song, a {@colour} paper flower, a painted
    rock, a box of {@food}, a poem about {@season}, a clay {@animal}""",
    skill="""ride a bike, swim, tie {his} shoes, read a book, skip rope, whistle, write {his} name, fly a
    kite, climb a tree, do a cartwheel, skate, play the piano, catch a ball, count to one hundred, bake bread,
    ride a horse, play the violin, draw a cat, button {his} coat, do a somersault, tell the time, make a paper
    plane, plant a seed, build a birdhouse, jump over a puddle, ride a scooter, bake cookies, sing a song,
    brush {his} teeth, fold {his} clothes""",
)
_LIST_SPLIT = {k: _words(v) for k, v in _LISTS_SRC.items()}
# A duplicate would let two choice paths write the same text (the floor would be overstated).
for _k, _v in list(_LIST_SPLIT.items()) + [("girls", GIRLS), ("boys", BOYS)]:
    assert len(set(_v)) == len(_v), f"duplicate entry in list {_k}"
assert not set(GIRLS) & set(BOYS) and not set(GIRLS + BOYS) & set(_LIST_SPLIT["petname"])

# ----------------------------------------------------------- template engine
_VAR, _LIST, _ALT = 0, 1, 2
_TOKEN = re.compile(r"\{(@?)(\w+)\}|[\[\]|]")
_CACHE: dict[str, tuple] = {}
_LOG = [0.0] + [math.log(k) for k in range(1, 400)]  # log k for every option count we use
assert max(map(len, [*_LIST_SPLIT.values(), GIRLS, BOYS])) < len(_LOG)


def _parse(s: str, i: int = 0, depth: int = 0):
    """Compile a template into nodes: str | (_VAR, name) | (_LIST, name) | (_ALT, (seq, ...))."""
    seq: list = []
    alts: list = []
    while True:
        m = _TOKEN.search(s, i)
        if m is None:
            if depth:
                raise ValueError(f"unclosed [ in template {s!r}")
            return tuple(seq + [s[i:]] if s[i:] else seq), len(s)
        if m.start() > i:
            seq.append(s[i:m.start()])
        tok, i = m.group(0), m.end()
        if tok == "[":
            sub, i = _parse(s, i, depth + 1)
            seq.append((_ALT, sub))
        elif tok in "|]":
            if not depth:
                raise ValueError(f"stray {tok} in template {s!r}")
            alts.append(tuple(seq))
            seq = []
            if tok == "]":
                return tuple(alts), i
        else:
            seq.append((_LIST if m.group(1) else _VAR, m.group(2)))


def _compile(s: str) -> tuple:
    nodes = _CACHE.get(s)
    if nodes is None:
        nodes = _CACHE[s] = _parse(s)[0]
    return nodes


_LISTS = {k: tuple(_compile(w) for w in v) for k, v in _LIST_SPLIT.items()}
_PRONOUNS = {"girl": ("she", "her", "her", "herself"), "boy": ("he", "him", "his", "himself")}


class _Ctx(dict):
    """Story variables.  A missing one is chosen when first written, by its maker, so that
    every random choice shows up in the text (a hidden choice would inflate the floor)."""

    __slots__ = ("g", "make")

    def __missing__(self, key):
        self.make[key](self.g, key)
        return self[key]


class _Gen:
    """Draws choices from the rng and keeps the running log-probability."""

    __slots__ = ("rnd", "lp", "out", "c", "only")

    def __init__(self, rng: random.Random, only: str | None = None):
        self.rnd = rng.random
        self.lp = 0.0
        self.out: list[str] = []
        self.only = only  # force every person's gender (tests)
        self.c = _Ctx()
        self.c.g, self.c.make = self, dict(_MAKERS)

    def index(self, n: int) -> int:
        """Uniform index in range(n); adds log(1/n) (0 when the choice is forced)."""
        if n == 1:
            return 0
        self.lp -= _LOG[n]
        return min(int(self.rnd() * n), n - 1)

    def pick(self, seq):
        return seq[self.index(len(seq))]

    def word(self, name: str) -> str:
        """A fresh pick from list `name`, rendered to a string."""
        mark = len(self.out)
        entries = _LISTS[name]
        self._render(entries[self.index(len(entries))])
        s = "".join(self.out[mark:])
        del self.out[mark:]
        return s

    def let(self, **lists: str) -> None:
        """Declare story variables picked (on first use) from the named lists."""
        for key, name in lists.items():
            self.c.make[key] = lambda g, k, name=name: g.c.__setitem__(k, g.word(name))

    def let_distinct(self, prefix: str, name: str, k: int) -> None:
        """prefix1..prefixk: different entries of list `name`, each picked on first use."""
        def make(g, key):
            taken = {g.c[f"{prefix}{j}"] for j in range(1, k + 1) if f"{prefix}{j}" in g.c}
            g.c[key] = g.pick([w for w in _LIST_SPLIT[name] if w not in taken])
        for j in range(1, k + 1):
            self.c.make[f"{prefix}{j}"] = make

    def say(self, *alternatives: str) -> None:
        """Write one of several alternative sentence templates (uniform; "" writes nothing)."""
        tpl = alternatives[self.index(len(alternatives))]
        if tpl:
            self._render(_compile(tpl))
            self.out.append(" ")

    def _render(self, seq) -> None:
        out = self.out
        for node in seq:
            if node.__class__ is str:
                out.append(node)
            elif node[0] == _VAR:
                out.append(self.c[node[1]])
            elif node[0] == _LIST:
                entries = _LISTS[node[1]]
                self._render(entries[self.index(len(entries))])
            else:
                self._render(node[1][self.index(len(node[1]))])


def _person(g: _Gen, prefix: str, avoid: str = "") -> None:
    """Choose gender then name; store {prefix}name, {prefix}he/him/his/himself/kid."""
    kid = g.only or g.pick(("girl", "boy"))
    names = GIRLS if kid == "girl" else BOYS
    name = g.pick([n for n in names if n != avoid] if avoid in names else names)
    he, him, his, himself = _PRONOUNS[kid]
    g.c.update({prefix + "name": name, prefix + "he": he, prefix + "him": him,
                prefix + "his": his, prefix + "himself": himself, prefix + "kid": kid})


def _make_friend(g: _Gen, key: str) -> None:
    _person(g, "f", avoid=g.c["hero"])
    g.c["friend"] = g.c["fname"]


def _make_parent(g: _Gen, key: str) -> None:
    parent, prel, kid = g.pick([p for p in PARENTS if g.only in (None, p[2])])
    he, him, his, _ = _PRONOUNS[kid]
    g.c.update(parent=parent, prel=prel, phe=he, phim=him, phis=his)


_MAKERS = {k: _make_friend for k in ("friend", "fhe", "fhim", "fhis", "fhimself", "fkid")}
_MAKERS.update({k: _make_parent for k in ("parent", "prel", "phe", "phim", "phis")})
_MAKERS["pet"] = lambda g, k: g.c.__setitem__(k, g.word("pet"))
_MAKERS["petname"] = lambda g, k: g.c.__setitem__(k, g.word("petname"))


# ------------------------------------------------------------------- plots
# Each plot writes the middle and end of a story.  Template names: {hero} {he} {him} {his}
# {himself} {kid}: the main character; {friend} {fhe} {fhim} {fhis} {fkid}: a friend;
# {parent} ("Mom") {prel} ("mom") {phe} {phim} {phis}: a grown-up; {pet} {petname}.
# Sentence starts and a/an are fixed afterwards, so templates write "{he}" and "a" everywhere.
# Optional describing words ("[{@adverb} |]", the {@thing} macro) are cheap in tokens and rich
# in choices: they lift the floor to TinyStories-like levels without making stories long.
def _opening(g: _Gen) -> None:
    g.say("Once upon a time, there was a {@trait}[ and {@trait}|] little {kid} named {hero}.",
          "Once upon a time, in a [small|quiet|sleepy|busy|pretty] [town|village][ by the sea| near the hills|],"
          " there lived a {@trait} {kid} named {hero}.",
          "There once was a {@trait} little {kid} named {hero} who lived near the {@place}.",
          "{hero} was a {@trait}[ and {@trait}|] {kid} who lived in a {@colour} house "
          "[with {his} family|by the {@place}].")
    g.say("{he} loved to {@activity}[ and {@activity}|].",
          "{his} favorite thing to do was to {@activity}[ with {his} {@relative}|].",
          "Every day, {he} liked to {@activity} with {his} [{@aadj} |]{pet}, {petname}.",
          "{he} had a [{@aadj} |]{pet} named {petname}, and they loved to {@activity} together.")
    g.say("", "{his} favorite color was {@colour}, and {his} favorite food was {@food}.",
          "{he} always [carried|had] a {@thing} [with {him}|everywhere {he} went].")


def _lost_object(g: _Gen) -> None:
    g.let(obj="obj", col="colour")
    g.let_distinct("s", "spot", 4)
    g.say("{his} favorite thing in the whole world was a [{@oadj} |]{col} {obj}.",
          "{he} had a [{@oadj} |]{col} {obj} that {he} took [everywhere|to bed every night|to the {@place}].",
          "{his} {@relative} had given {him} a [{@oadj} |]{col} {obj} [for {his} birthday|last {@season}].")
    g.say("{@when}, {hero} wanted to [play with|show {friend}] {his} {obj}, but it was gone!",
          "{@when}, {hero} looked in {his} {@container}, but the {obj} was not there.",
          "When {he} came home from the {@place} [one {@time}|on {@day}], {his} {obj} was "
          "[gone|missing|nowhere to be found].")
    g.say('{he} felt {@sad} and [said|cried|whispered], "{@ohno}! Where is my {obj}?"',
          '{hero} [sat on the {@seat}|stood very still] and cried, "{@ohno}! I can\'t find my {col} {obj}!"')
    g.say("{he} looked {s1}, {s2}, and {s3}.", "{he} searched {s1}. Then {he} [searched|checked|looked] {s2} and {s3}.",
          "First {he} [looked|checked] {s1}. Next {he} looked {s2}. Then {he} [peeked|looked] {s3}.")
    g.say("", "{he} found a {@thing} and a {@thing}, but no {obj}.")
    g.say('{he} {@move} to {his} {prel}[ in the {@room}|]. {parent} [smiled|hugged {him}|knelt down] and {@say}, '
          '"{@comfort}, {hero}."',
          '{he} {@move} to {his} {prel} for help. "{@comfort}," {parent} {@say}.')
    g.say("{hero} thought [hard|for a moment]. Then {he} [looked|peeked] {s4}, and there it was!",
          "Just then, {his} {pet}[, {petname},|] [walked in|came over|ran up] with something {col}. It was the "
          "{obj}!",
          "{parent} looked {s4}, and there was the {obj}[, next to a {@thing}|]!")
    g.say("", "{hero} hugged the {obj} [tight|close|and {@smile}].",
          "{hero} [jumped up and down|{@smile}|danced around the {@room}] and put the {obj} next to {his} {@thing}.")
    g.say("{@since}, {hero} [always |]kept {his} {obj} "
          "[in a safe place|on {his} shelf|in {his} {@container}|next to {his} {@thing}].",
          "{hero} learned to take good care of {his} things.")


def _new_friend(g: _Gen) -> None:
    g.let(place="placew")
    g.say("{@when}, {hero} went to the {place} with {his} {prel}.",
          "On {@day}, {parent} took {hero} to the {place}[ to {@activity}|].",
          "One {@season} {@time}, {hero} {@move} to the {place}.")
    g.say("There {he} saw a {fkid} [with a {@thing} |]sitting [all alone|by {fhimself}] "
          "[on a {@seat}|under a {@tree}|near the {@oadj} gate].",
          "At the {place}, {he} saw a {@trait} {fkid} who [looked {@sad}|was playing alone with a {@thing}].",
          "Near the {@tree}, a {fkid} in a {@colour} [hat|coat|dress|shirt|scarf] was [sitting|standing] "
          "[all alone|by {fhimself}].")
    g.say('{hero} {@move} over and {@say}, "Hi! My name is {hero}. '
          '[What is your name|Do you want to play|Can I play too]?"',
          '{hero} [walked|went] over and {@say}, "Hello! I am {hero}. [Who are you|Do you want to be friends]?"')
    g.say('The {fkid} [{@smile}|looked up] and {@say}, "I am {friend}. '
          '[I just moved here|I am new here|I don\'t know anyone here]."',
          'The {fkid} {@smile} and {@say}, "My name is {friend}. [I would like that|Yes, please|Okay]!"')
    g.say("{hero} [showed {friend} {his} {@thing}|shared {his} {@food} with {fhim}|"
          "told {fhim} a funny joke about a {@animal}].",
          "{hero} asked {friend} to [play {@game}|look for a {@animal}|build a castle out of {@colour} sticks].",
          "{friend} [showed {hero} {fhis}|let {hero} hold {fhis}] {@thing}, and {hero} "
          "[thought it was {@oadj}|loved it].")
    g.say("They played {@game} together and laughed [a lot|all {@time}|until the sun went down].",
          "They ran and played [by the {@tree}|near the {@place}] until their [legs|feet] were tired.",
          "Then they played {@game} and [fed a {@animal}|looked for {@colour} stones|sang about a {@animal}].")
    g.say('Later, {friend} asked, "Can we play again [tomorrow|on {@day}|soon|at the {@place}]?" {hero} '
          '[nodded|{@smile} and nodded|said yes] and gave {friend} {his} {@thing}.',
          'Before they went home, {hero} said, "[See you tomorrow|Let\'s meet here again], {friend}!"')
    g.say("{@since}, {hero} and {friend} were [best friends|good friends|the best of friends].",
          "{hero} was so {@happyw}. {he} had made a new friend at the {place}.",
          "{hero} learned that being kind [is the best way to make friends|makes the world better].")


def _sharing(g: _Gen) -> None:
    g.let(food="foodw")
    g.c["dish"] = g.pick(("bag", "box", "basket", "bowl", "plate", "jar"))
    g.say("{@when}, {parent} gave {hero} a [big |]{dish} of {food}.",
          "{hero} had a {dish} of {@fadj} {food} [from the {@place}|for a snack].",
          "On {@day}, {hero} [got|bought] a [{@oadj} |]{@colour} {dish} of {food} at the {@place}.")
    g.say("", '"[These are|This is] all for me," {he} [thought|said] [{@sadv}|to {himself}].')
    g.say("Then {his} friend {friend} came [over|to play|to visit][ with a {@thing}|]. "
          '"[Yum|Wow|Oh]! Can I have some, please?" {fhe} asked.',
          '{@suddenly}, {friend} [came by|walked up] and asked, "[Can I have some {food}|May I try some], please?"')
    g.say('{hero} [held the {dish} close|hid the {dish} behind {his} back] and {@say}, "No! '
          '[These are all mine|It is all mine]!"',
          '{hero} shook {his} head and {@say}, "No, [they are|it is] [mine|only for me]."')
    g.say("{friend} felt {@sad} and "
          "[walked away|looked at the ground|sat down on the {@seat}][ with {fhis} {@thing}|].",
          "{friend} looked {@sad}. {fhe} [went to play with a {@thing}|sat alone by the {@tree}].")
    g.say('{parent} [saw this|came over] and {@say}, "{hero}, '
          '[sharing is caring|when we share, everyone is happy|good things are better with friends]."',
          '{parent} asked[ {@sadv}|], "How would {friend} feel, {hero}?"')
    g.say('{hero} {@move} to {friend} and {@say}, "{@sorry}. [Here, you can have half|Let\'s share]."',
          '{hero} {@move} to {friend}. "{@sorry}, {friend}. [Please have some|We can share]," {he} said.')
    g.say("{friend} [{@smile}|gave {hero} a big hug]. They ate the {food} together "
          "[under a {@tree}|on the {@seat}|in the sun].",
          '"{@thanks}!" {friend} said. They shared the {food} [on a {@colour} blanket|by the {@place}].')
    g.say("{hero} learned that sharing "
          "[makes everyone happy|is a kind thing to do|feels good|is more fun than eating alone].",
          "{@since}, {hero} always shared {his} [snacks|toys|{@food}] with {his} friends.")


# (what the hero fears, the moment it happens, how it turns out)
_FEARS = (
    ("the dark", "When {parent} turned off the [{@oadj} |]lamp [one {@season} night|at bedtime], {his} room was "
                 "[very |]dark.",
     "{he} [looked around|opened {his} eyes] and saw {his} {@thing}. The dark was just {his} room without the "
     "light."),
    ("the big slide", "At the {@place}, all the [kids|children] went down the big {@colour} slide.",
     "{he} climbed up [{@adverb} |]and went down the slide with a [big|loud] whoosh. "
     "[It was fun|{@wow}, it was fast]!"),
    ("big dogs", "One {@time}, a big {@colour} dog came up to {him} [in the park|at the {@place}].",
     "The dog, {@petname}, just wagged its [{@oadj} |]tail. It was [friendly|so nice]!"),
    ("the water", "At the {@place}, {his} friends splashed and swam in the [water|waves].",
     "Soon {he} was [splashing|swimming] with a {@thing} [too|like a {@animalw}]!"),
    ("thunder", "One {@season} night, a [loud |]boom of thunder "
                "[shook the windows|woke {him} up|rattled the {@room} door].",
     "{parent} [counted with {him}|sang a song about a {@animal}] until the storm [went away|was quiet]."),
    ("the doctor", "On {@day}, {hero} [had to go|went] to the doctor "
                   "[for a checkup|because {his} [ear|tummy|knee|throat] hurt].",
     "The doctor was [kind|{@trait}] and gave {him} a {@colour} sticker [shaped like a {@animal}|at the end]."),
    ("climbing high", "{his} friends were climbing the tall [tree|ladder|wall] at the {@place}.",
     "{he} climbed one step at a time, and soon {he} could see the whole {@place}!"),
    ("bees", "In the [garden|yard|{@place}], a [fuzzy|big|buzzy] bee buzzed near the [{@colour} |]{@bloom}.",
     "The bee [just |]flew to the [{@colour} |]{@bloom}. It did not care about {hero} at all."),
    ("the first day of school", "On {@day}, it was {his} first day at a [new|big|{@padj}] "
                                "school[ by the {@placew}|].",
     "{his} teacher {@smile}, and a {@trait} {fkid} named {friend} sat next to {him}."),
    ("spiders", "One {@time}, {he} saw a [tiny|little|big] spider [in the {@room}|on the {@seat}].",
     "The spider [just |]sat [still|in the corner] of its [{@oadj} |]web. It was more afraid of {hero}!"),
)


def _brave(g: _Gen) -> None:
    fear, meet, win = g.pick(_FEARS)
    g.c["fear"] = fear
    g.say("{hero} was [a little |very |]afraid of {fear}[, even more than {his} {@relative}|].",
          "There was one thing {hero} did not like: {fear}.",
          "{hero} was brave about many things, but not about {fear}.")
    g.say(meet)
    g.say("{he} felt {@scared} and [held {his} {@thing} tight|hid behind {his} {prel}|wanted to run away].",
          '{he} [shook|froze] and [whispered|said], "I am [too |]{@scared}!"')
    g.say('{parent} [knelt down|sat next to {him}|held {his} hand] and {@say}, "It is okay to be scared, {hero}. '
          '{@comfort}."',
          '{parent} [hugged {him}|gave {him} a {@thing}] and {@say}, '
          '"[Being brave is not easy|I will stay with you|Just try once]."')
    g.say("{hero} held {his} {@thing}, took a [deep|big] breath[ and counted to {@num}|].",
          "{hero} [held {parent}'s hand|closed {his} eyes] and [{@adverb} |]took one small step.")
    g.say(win)
    g.say("{he} was not scared anymore. {he} felt {@happy}!", "{hero} {@smilew} a big smile. {he} felt so {@happyw}.",
          '"{@wow}! [That was not so bad|I did it]!" {hero} [shouted|said].')
    g.say("{@since}, {hero} was not afraid of {fear}[ anymore|].",
          "{hero} learned that being brave means trying even when you are {@scared}.")


# (event, how it ends) for the middle of a trip
_TRIP_EVENTS = (
    ("a [strong |]gust of wind blew {his} {@colour} hat [away|off {his} head|into a {@tree}]",
     "{he} [ran|chased] after it and [caught it|got it back]."),
    ("a {@animal} [came over|walked up] and [sniffed|looked at] {his} {food}",
     "{hero} [laughed|giggled] and gave it a [tiny|little] piece."),
    ("{he} found a {@thing} on the ground", "{he} gave it to a [helper|worker] so its owner could find it."),
    ("it [started|began] to rain", "They hid under a {@tree}[ with their {@food}|] until the rain stopped."),
    ("{he} saw {his} friend {friend}", "{hero} and {friend} [played {@game}|ran around] together for a while."),
    ("{he} tripped on a [rock|root|stick|{@thing}]", "{he} got up, brushed off {his} [knees|{@colour} pants], and "
                                                     "{@smile}."),
    ("a {@animal} [ran|hopped] across the path", "Everyone [laughed|stopped to look], and {hero} waved at it."),
    ("{he} dropped {his} {@thing}", "A {@trait} {fkid} named {friend} picked it up and gave it back."),
)


def _trip(g: _Gen) -> None:
    g.let(place="placew", food="foodw")
    g.let_distinct("a", "animalw", 2)
    g.say("One {@weather} {@day}, {hero} and {his} [family|{prel}|class|{@relative}] went on a trip to the {place}.",
          "On {@day}, {parent} said, \"Let's go to the {place} today!\"",
          "One {@season} {@time}, {hero} [rode the bus|took a train|went by car] to the {place} with {his} {prel}.")
    g.say("{hero} was so {@happyw} that {he} [could not stop smiling|jumped up and down|sang all the way there].",
          "{he} [packed|brought] {his} {@thing} and a {@colour} [hat|bag|coat] for the trip.",
          '"{@wow}!" {hero} [said|shouted]. "I [love|can\'t wait to see] the {place}!"')
    g.say("At the {place}, {he} saw a [{@aadj} |]{a1} and a [{@aadj} |]{a2}.",
          "[First|Soon], {he} saw a {a1}. Then {he} saw a [{@aadj} |]{a2}!",
          "There was a [{@aadj} |]{a1} [near the {@tree}|by the water|on a {@seat}] and a {a2} right behind it.")
    g.say('{hero} pointed and {@say}, "Look at the {a1}! It is so [big|funny|cute|fast|pretty|{@aadj}]!"',
          'The {a1} looked at {hero}, and {hero} [waved|{@smilew}] at it.')
    g.say("Then they [had a picnic|sat down to eat] [under a {@tree}|on a {@colour} blanket]. They ate {food} and "
          "drank {@drink}.",
          "For lunch, they ate {food} [on a {@seat}|by the {@tree}]. {hero} [drank|had] {@drink} too.")
    event, after = g.pick(_TRIP_EVENTS)
    g.say("{@suddenly}, " + event + ". " + after)
    g.say("[At sunset|When the sun went down|In the {@time}], they went home[, tired but {@happyw}|].",
          "[Later|Soon|At last], it was time to go home. {hero} [waved goodbye to the {a2}|fell asleep in the car].")
    g.say("That night, {he} dreamed about [the {a1}|{@food}|a {@animal}] and the {place}.",
          "{he} could not wait to tell {his} {@relative} all about the trip and show {him} a {@thing} from the "
          "{place}.",
          "It was the best [day|trip] ever, and {hero} [drew a picture of the {a1}|wanted to go back soon].")


def _helping_animal(g: _Gen) -> None:
    g.let(ani="helpable")
    g.say("{@when}, {hero} was playing [in the yard|at the {@place}] when {he} heard a [soft|tiny|sad] "
          "[cry|sound|noise].",
          "On {@day}, {hero} was walking to the {@place}[ with {his} {@thing}|] when {he} heard something "
          "[cry|squeak].")
    g.say("{he} looked [around|under a bush|behind a {@tree}|near the {@seat}] and found a "
          "{ani}[ next to a {@thing}|].",
          "{he} [{@adverb} |]followed the sound and saw a [tiny|little|small] {ani}.")
    g.say("The {ani} [had a hurt leg|was stuck in a [fence|bush|net|hole]|was lost and alone|was cold and wet].",
          "The poor {ani} [could not walk|was shaking] and looked {@scared}.")
    g.say('"Poor little {ani}," {hero} {@say}. "{@comfort}."',
          '"[Hello|Hi there], little {ani}," {hero} {@say}. "I will take care of you."')
    g.say("{he} {@adverb} picked it up and [carried|took] it to {his} {prel}.",
          "{he} [wrapped|put] it in {his} {@colour} [scarf|hat|sweater] and {@move} to {parent}.")
    g.say("", "{parent} [found|got] a [soft|warm|clean] [towel|blanket|box|basket] and some "
          "[water|food|seeds] for the {ani}.",
          "{parent} [{@smile}|nodded] and [made a little bed|found a {@oadj} box] for the {ani}.")
    g.say("They [took care of|looked after] the {ani} for {@dur}. {hero} [sang to it|fed it|gave it a name] every "
          "{@time}.",
          "For {@dur}, {hero} [fed|watched|talked to] the {ani} [and kept it warm|every {@time}].")
    g.say("", "Soon the {ani} was [strong|well|better|happy] again.",
          "[One {@weather} {@time}|At last], the {ani} could [walk|run|move] again!")
    g.say("{hero} [took|carried] it [outside|to the {@place}] and [let it go|set it free]. The {ani} "
          "[looked back at {him}|ran to its family].",
          "They let the {ani} go [near the {@tree}|at the {@place}], and it [hurried|went] [home|away] to its "
          "family.")
    g.say("{hero} felt {@happy}. {he} "
          "[knew {he} had done a good thing|drew a picture of the {ani} with {his} {@colour} crayon].",
          "{hero} learned that helping others [feels good|is the right thing to do|makes the world a better place].")


def _broken_thing(g: _Gen) -> None:
    g.let(thing="fragile", room="room")
    g.say("{parent} had a [{@oadj} |]{@colour} {thing} that {phe} loved very much.",
          "In the {room}, there was a [{@oadj} |]{@colour} {thing} that belonged to {parent}.",
          "{his} {prel} kept a [{@oadj} |]{@colour} {thing} on a [high |]shelf in the {room}.")
    g.say("{@when}, {hero} was playing with {his} {@thing} in the {room}.",
          "On {@day}, {hero} was [running|dancing|jumping] around the {room} with {his} {pet}.")
    g.say("[Oops|Crash|{@ohno}]! {he} [bumped|hit|kicked] the {thing}, and it "
          "[fell to the floor|broke into pieces|cracked].",
          "{@suddenly}, the {thing} [fell|slipped] and broke with a loud [crash|bang]!")
    g.say("", "{hero} felt {@sad}. {he} "
          "[wanted to hide the pieces|did not know what to do|thought about running away].",
          "{hero} [sadly |quietly |slowly |]looked at the pieces. {he} felt {@scared} and {@sad}.")
    g.say('{he} [went|walked slowly] to {parent} and [said|whispered], "{@sorry}. I broke your {thing}."',
          '{he} [found|went to] {parent}[ in the {room}|] and [said|whispered], "[{parent}, I|I] broke the {thing}. '
          '{@sorry}."')
    g.say('{parent} [hugged {him}|was {@sad}, but {phe} hugged {him}|knelt down]. "Thank you for '
          '[telling me the truth|being honest], {hero}," {phe} {@say}.',
          '{parent} [looked at the pieces|sighed], then {phe} {@smile}. "I am glad you told me, {hero}," {phe} said.')
    g.say("Together they "
          "[fixed the {thing} with glue|glued the pieces back together|put the pieces back together with tape] "
          "[{@adverb}|at the {@oadj} table].",
          "{parent} and {hero} [sat at the table|worked together] and [fixed|glued] the "
          "{thing}[ with {@colour} tape|].")
    g.say("The {thing} was not perfect, but {parent} said it was "
          "[even more special now|just fine|still {phis} favorite].",
          "", "Now the {thing} had a [tiny|little|long|thin|small] crack, but "
          "[{parent} loved it anyway|it still looked nice].")
    g.say("{hero} learned that telling the truth [is brave|is always the right thing to do|makes things better].",
          "{@since}, {hero} [played with {his} {@obj} outside|was more careful in the {room}].")


def _surprise(g: _Gen) -> None:
    g.let(gift="gift")
    g.say("Tomorrow was {parent}'s birthday, and {hero} wanted to give {phim} a [special|{@oadj}|big] surprise.",
          "It was almost {parent}'s birthday. {hero} wanted to make {phim} [very |]happy.",
          "[Soon|On {@day}], it would be {parent}'s birthday, and {hero} had no gift [yet|at all].")
    g.say("{he} thought and thought. Then {he} had an idea! {he} would make {gift}.",
          '"I know!" {hero} said [{@sadv}|to {his} {pet}]. "I will make {gift}!"')
    g.say("{he} worked [very hard|all {@time}|for a long time] with {@colour} and {@colour} [paint|crayons|paper].",
          "{he} [used|found] [glue, |]{@colour} paper and a {@thing} to make it [extra special|just right].")
    g.say("{he} hid the surprise [under {his} bed|in {his} closet|behind the [couch|door|curtains]] so {parent} "
          "would not see it.",
          "{his} {@relative} helped {him} [wrap it in {@colour} paper|tie a {@colour} ribbon on it].")
    g.say('[The next morning|On the big day], {hero} [tiptoed|{@move}] to {parent} and {@say}, "Happy birthday! '
          '[Surprise|I made this for you]!"',
          'On {parent}\'s birthday, {hero} [{@adverb} |]gave {phim} the gift and {@sayw}, '
          '"[Happy birthday|This is for you]!"')
    g.say('{parent} [gasped|{@smile}] and {@say}, "Oh, {hero}! [This is the best gift ever|I love it|{@thanks}]!"',
          "{parent} was so {@happyw} that {phe} [gave {hero} a big hug|laughed and danced|had tears in {phis} eyes].")
    g.say("They ate {@food} and [sang songs|played games|danced] with a {@thing}.",
          "That [evening|night], the whole family [ate {@food}|had a party] [in the {@room}|at the {@place}].")
    g.say("{hero} learned that "
          "[a gift made with love is the best gift of all|making others happy makes you happy too].",
          "It was the [best|happiest] birthday ever.")


def _storm(g: _Gen) -> None:
    g.say("One {@nice} {@time}, {hero} was playing "
          "[with {his} {@thing} |][in the yard|in the garden|at the {@place}].",
          "On a {@nice} {@day}, {hero} and {his} {pet} were [playing|running] [near the {@tree}|at the {@place}].")
    g.say("{@suddenly}, the sky turned dark and [gray|black]. "
          "[The wind began to blow|Big drops of rain began to fall].",
          "[Soon|After a while], big {@colour} clouds [rolled in|filled the sky], and the wind "
          "[began to howl|blew hard].")
    g.say("[Boom|Crash|Rumble]! {he} heard [loud |]thunder [in the sky|far away|over the {@place}].",
          "There was a [bright |]flash of lightning and a [loud |]boom of thunder.")
    g.say("{hero} felt {@scared} and ran [inside|home|to {parent}] [as fast as {he} could|right away].",
          '"{@ohno}!" {hero} cried, and {he} {@move} [inside|home] to {his} {prel}.')
    g.say('{parent} [wrapped {him} in a {@colour} blanket|gave {him} a cup of {@drink}] and {@say}, '
          '"[We are safe inside|The storm will pass soon|{@comfort}]."',
          '{parent} [hugged {him}|sat with {him} by the window] and {@say}, "{@comfort}, {hero}."')
    g.say("", "They [read a book|played {@game}|sang songs|built a fort with pillows] while the rain "
          "[fell|tapped on the window|poured down].",
          "[Inside|In the {@room}], they [made {@food}|drew pictures of a {@animal}|told stories] and listened to "
          "the rain.")
    g.say("[After a while|Soon|At last], the storm [stopped|was over], and {hero} saw a [big|bright] rainbow "
          "[in the sky|over the {@place}].",
          "[After a while|At last], the rain stopped, and a [big|bright] rainbow [came out|appeared] over the "
          "{@place}.")
    g.say("{he} [ran outside|jumped in the puddles|counted the colors] with {his} {@thing} and felt {@happy}.",
          '"{@wow}! [Look at all the colors|It is so pretty]!" {hero} [said|shouted].')
    g.say("{hero} learned that after every storm, the sun [comes out|shines] again[ over the {@place}|].",
          "{hero} was not [afraid|scared] of storms anymore, [not even a little|and neither was {his} {pet}].")


def _learning(g: _Gen) -> None:
    g.let(skill="skill")
    g.say("{hero} wanted to learn how to {skill}.",
          "More than anything, {hero} wanted to {skill} like {his} {@relative}.",
          "One {@season}, {hero} decided to learn how to {skill}.")
    g.say("{he} tried [on {@day}|in the {@room}|at the {@place}], but it was [hard|tricky|not easy]. {he} "
          "[made mistakes|got it wrong|fell down] again and again.",
          "{he} tried [{@adverb}|again and again], but it did not work.")
    g.say('{he} felt {@sad} and {@say}, "I can\'t do it!"',
          '{hero} [threw down {his} {@thing}|sat on the {@seat}] and {@say}, "This is too hard!"')
    g.say('{parent} [sat next to {him}|gave {him} a hug] and {@say}, "{@cheer}, {hero}."',
          '{his} {@relative} {@say}, "{@cheer}, {hero}. [You can do it|I will help you]."')
    g.say("So {hero} practiced every {@time} [for {@dur}|after school|before dinner][ with {his} {@thing}|].",
          "{hero} practiced [in the {@room}|at the {@place}|in the yard] [every day|with {his} {pet} watching].")
    g.say("[{@when}|At last], {he} did it! {he} could {skill}!",
          "[On {@day}|After {@dur}], {hero} tried one more time, and this time it worked!")
    g.say('{he} [shouted|cheered], "I did it!" {parent} '
          '[clapped|cheered|gave {him} a high five|gave {him} a {@thing}].',
          '"{@wow}!" {hero} [shouted|said]. {his} {prel} [{@smile}|clapped] and gave {him} a {@colour} star.')
    g.say("{hero} felt {@happy}. {he} learned that [practice|trying again and again|never giving up] "
          "[makes things easier|helps you grow].",
          "{hero} was so {@happyw}. Now {he} [could|loved to] {skill} every day.")


def _argument(g: _Gen) -> None:
    g.let(obj="obj")
    g.say("{hero} and {his} friend {friend} were playing [at the {@place}|in {his} {@room}].",
          "{@when}, {friend} came over to play with {hero}.",
          "On {@day}, {hero} and {friend} met at the {@place} to play {@game}.")
    g.say("They both wanted to play with the [{@oadj} |]{@colour} {obj}.",
          "[Then|Soon] they found a [{@oadj} |]{@colour} {obj}, and they both wanted it.")
    g.say('{hero} {@say}, "[It is my turn|I want the {obj}|Give me the {obj}]!" {friend} {@say} back, "No, '
          '[it is my turn|I want it|it is mine]!"',
          '"[Give it to me|I had it first]!" {hero} [said|shouted]. "No, I want it!" {friend} [cried|said].')
    g.say("They [pulled|tugged] on the {obj} until it [slipped|fell] into the [mud|grass|sand].",
          "They [pulled|tugged] and [pulled|tugged], and the {obj} [fell|flew] [under the {@seat}|into a puddle].")
    g.say("Both of them felt {@sad} and sat [far apart|alone].",
          "{friend} [went|walked] away, and {hero} sat [alone|by {himself}] [on the {@seat}|in the {@room}] with "
          "{his} {@thing}.")
    g.say('After [a while|a few minutes|some time], {hero} {@say}, "{@sorry}, {friend}. '
          '[We can take turns|You can go first|Let\'s play together]."',
          '[Soon|After a while], {hero} {@move} to {friend} and {@say}, "{@sorry}. '
          '[Let\'s share|You can have it first]."')
    g.say('{friend} [{@smile}|nodded] and {@say}, "I am sorry too. [Let\'s play together|You are my best friend]."',
          '{friend} [{@smile}|hugged {hero}]. "I am sorry too, {hero}," {fhe} {@say}.')
    g.say("", "They [took turns with the {obj}|played with the {obj} together] and had [lots of|so much] fun.",
          "Then they [played {@game}|took turns] [all {@time}|until dinner] and [laughed|had fun] together.")
    g.say("{hero} and {friend} learned that [taking turns|sharing|saying sorry] "
          "[is better than fighting|makes playing more fun|is what good friends do].",
          "{@since}, they always [took turns|shared their toys].")


def _garden(g: _Gen) -> None:
    g.let(plant="plant")
    g.say("One {@season} {@time}, {parent} gave {hero} a [small|tiny|paper] bag of seeds.",
          "{hero} found a [small|tiny] bag of seeds in the {@room}.",
          "At the {@place}, a {@trait} [lady|man] gave {hero} a [little |]{@colour} bag of seeds.")
    g.say('"These seeds will grow into {plant}," {parent} said.',
          '"What will these seeds grow into?" {hero} asked. "{plant}!" {parent} said.')
    g.say("{he} [planted|put] the seeds "
          "[in the garden|in the yard|by the {@tree}|near the {@seat}][ with {his} {@colour} shovel|].",
          "{he} [{@adverb} |]put the seeds in a {@oadj} pot [by the window|in the {@room}|on the porch].")
    g.say("Every {@time}, {he} gave the seeds water "
          "[from a {@colour} watering can|with a {@oadj} cup|with {his} {@relative}].",
          "{he} watered them every {@time} and [sang to them|told them about {his} {pet}|talked to them].")
    g.say("{he} waited [and waited|for {@dur}], but nothing happened. {he} felt {@sad}.",
          '[After {@dur}|Days went by], there was still nothing. "Why won\'t they grow?" {hero} asked.')
    g.say('{parent} {@say}, "{@cheer}, {hero}. [Seeds grow slowly|Keep taking care of them|Good things take time]."',
          '{his} {@relative} [{@smile}|laughed] and {@say}, "[Seeds need time|Wait and see], {hero}."')
    g.say("Then one {@weather} morning, {hero} saw a [tiny|little] green sprout[ next to {his} {@thing}|]!",
          "[At last|One {@day} morning], a little green [leaf|sprout] came up!")
    g.say("[Soon|After a few weeks|By {@season}], the [garden|yard] was full of [big|tall|beautiful|{@colour}] "
          "{plant}[ and {@colour} butterflies|].",
          "[Soon|By {@season}], there were [lots of|so many] {plant}, and a {@animal} came to [look|visit].")
    g.say("", "{hero} [picked some|shared some] and gave them to {his} {@relative}, who was {@happy}.",
          "{hero} {@smile} and [showed them to|shared them with] {friend}.")
    g.say("{hero} learned that [patience|waiting] [is worth it|brings good things].",
          "It was the [best|happiest] garden on the street.")


_PLOT_FUNCS = {"lost_object": _lost_object, "new_friend": _new_friend, "sharing": _sharing,
               "brave": _brave, "trip": _trip, "helping_animal": _helping_animal,
               "broken_thing": _broken_thing, "surprise": _surprise, "storm": _storm,
               "learning": _learning, "argument": _argument, "garden": _garden}
PLOTS: tuple[str, ...] = tuple(_PLOT_FUNCS)

# "a" -> "an" before a vowel (no list word starts with a "you" sound, like "unicorn");
# a capital letter at each sentence start and at the start of a quote.
_A_AN = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")
_CAPS = re.compile(r'(?:^|(?<=[.!?] )|(?<=[.!?]" ))"?[a-z]|(?<=, ")[a-z]')


def _write(rng: random.Random, only: str | None = None) -> Story:
    """One story.  `only` ("girl"/"boy") forces every person's gender (used by the tests)."""
    g = _Gen(rng, only)
    plot = g.pick(PLOTS)
    _person(g, "")
    g.c["hero"] = g.c["name"]
    _opening(g)
    _PLOT_FUNCS[plot](g)
    text = "".join(g.out).strip()
    text = _A_AN.sub(r"\1n ", text)
    text = _CAPS.sub(lambda m: m.group(0).upper(), text)
    return Story(text=text, logprob=g.lp, plot=plot)


def write_story(rng: random.Random) -> Story:
    """One story drawn with `rng` (only rng.random() is used)."""
    return _write(rng)


def generate_stories(n: int, seed: int) -> list[Story]:
    """n stories; story i depends only on (seed, i), so shorter lists are prefixes of longer ones."""
    return [_write(random.Random(seed * 1_000_003 + i)) for i in range(n)]


def vocabulary() -> set[str]:
    """Every lowercase word the generator can write (names, list entries and template words)."""
    texts = [t for v in _LIST_SPLIT.values() for t in v] + [p[0] for p in PARENTS]
    texts += list(GIRLS + BOYS) + ["girl boy she he her him his herself himself an"]
    texts += [t for f in _FEARS for t in f] + [t for e in _TRIP_EVENTS for t in e]
    for fn in (_opening, *_PLOT_FUNCS.values()):  # the templates are the functions' string constants
        for const in fn.__code__.co_consts:
            if isinstance(const, str) and " " in const:
                texts.append(const)
            elif isinstance(const, tuple):
                texts += [c for c in const if isinstance(c, str)]
    words: set[str] = set()
    for t in texts:
        words.update(re.findall(r"[a-z]+", re.sub(r"\{@?\w+\}", " ", t).lower()))
    return words

