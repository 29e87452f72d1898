"""Small hand-written tables for the instruction, rewriting, summary and extraction items.

Like :mod:`hybrid.routing.calibration.facts`, everything here is common knowledge typed in for
this project, so the calibration set carries no third-party licence.
"""

from __future__ import annotations

from hybrid.routing.calibration.facts import ANIMALS, DAYS, FRUITS, MONTHS, PLANETS

COLOURS: tuple[str, ...] = (
    "red",
    "blue",
    "green",
    "yellow",
    "black",
    "white",
    "orange",
    "purple",
    "pink",
    "brown",
    "grey",
)

CITIES: tuple[str, ...] = (
    "Lyon",
    "Oslo",
    "Porto",
    "Leeds",
    "Graz",
    "Ghent",
    "Turin",
    "Malmo",
    "Cork",
    "Bergen",
    "Bilbao",
    "Utrecht",
)

# (plural noun as asked, the words that name one): the kinds of things lists are made of.
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fruits", FRUITS),
    ("animals", ANIMALS),
    ("colours", COLOURS),
    ("days of the week", DAYS),
    ("months of the year", MONTHS),
    ("planets", PLANETS),
)

# (thing, its colour): "In at most N words, what colour is ...?"
COLOURED: tuple[tuple[str, str], ...] = (
    ("the sky on a clear day", "blue"),
    ("grass", "green"),
    ("fresh snow", "white"),
    ("a ripe banana", "yellow"),
    ("coal", "black"),
    ("a ripe tomato", "red"),
    ("a carrot", "orange"),
    ("milk", "white"),
    ("a lemon", "yellow"),
    ("a fire engine", "red"),
)

# (animal, number of legs): "Answer with only a number: how many legs ...?"
LEGS: tuple[tuple[str, int], ...] = (
    ("a spider", 8),
    ("a dog", 4),
    ("a bird", 2),
    ("an ant", 6),
    ("a cat", 4),
    ("a horse", 4),
    ("a duck", 2),
    ("a beetle", 6),
    ("an octopus (arms)", 8),
    ("a cow", 4),
)

# (English, {language: accepted spellings}): short phrases to translate (not the local
# prompt's own example, "good night" into French).
PHRASES: tuple[tuple[str, dict[str, tuple[str, ...]]], ...] = (
    ("thank you", {"French": ("merci",), "Spanish": ("gracias",), "German": ("danke",),
                   "Italian": ("grazie",)}),
    ("hello", {"French": ("bonjour", "salut"), "Spanish": ("hola",), "German": ("hallo",),
               "Italian": ("ciao", "buongiorno")}),
    ("friend", {"French": ("ami", "amie"), "Spanish": ("amigo", "amiga"),
                "German": ("Freund", "Freundin"), "Italian": ("amico", "amica")}),
    ("yes", {"French": ("oui",), "Spanish": ("sí", "si"), "German": ("ja",),
             "Italian": ("sì", "si")}),
    ("cat", {"French": ("chat",), "Spanish": ("gato",), "German": ("Katze",),
             "Italian": ("gatto",)}),
    ("dog", {"French": ("chien",), "Spanish": ("perro",), "German": ("Hund",),
             "Italian": ("cane",)}),
    ("water", {"French": ("eau",), "Spanish": ("agua",), "German": ("Wasser",),
               "Italian": ("acqua",)}),
    ("bread", {"French": ("pain",), "Spanish": ("pan",), "German": ("Brot",),
               "Italian": ("pane",)}),
    ("please", {"French": ("s'il vous plaît", "s'il te plaît"), "Spanish": ("por favor",),
                "German": ("bitte",), "Italian": ("per favore",)}),
    ("goodbye", {"French": ("au revoir",), "Spanish": ("adiós", "adios"),
                 "German": ("auf Wiedersehen", "tschüss"), "Italian": ("arrivederci",)}),
    ("red", {"French": ("rouge",), "Spanish": ("rojo",), "German": ("rot",),
             "Italian": ("rosso",)}),
    ("three", {"French": ("trois",), "Spanish": ("tres",), "German": ("drei",),
               "Italian": ("tre",)}),
    ("book", {"French": ("livre",), "Spanish": ("libro",), "German": ("Buch",),
              "Italian": ("libro",)}),
    ("house", {"French": ("maison",), "Spanish": ("casa",), "German": ("Haus",),
               "Italian": ("casa",)}),
)  # fmt: skip

# (misspelt, right): common spelling mistakes.
MISSPELLINGS: tuple[tuple[str, str], ...] = (
    ("recieve", "receive"),
    ("definately", "definitely"),
    ("seperate", "separate"),
    ("occured", "occurred"),
    ("untill", "until"),
    ("wierd", "weird"),
    ("tommorow", "tomorrow"),
    ("begining", "beginning"),
    ("beleive", "believe"),
    ("freind", "friend"),
    ("goverment", "government"),
    ("enviroment", "environment"),
    ("neccessary", "necessary"),
    ("accomodate", "accommodate"),
    ("calender", "calendar"),
    ("truely", "truly"),
    ("arguement", "argument"),
    ("existance", "existence"),
    ("independant", "independent"),
    ("wensday", "Wednesday"),
)

# (third person singular, past, future with "will"): regular and common irregular verbs, each
# with the places or things that follow it.
VERBS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("walks", "walked", "will walk", ("to school", "to the park", "home")),
    ("plays", "played", "will play", ("football", "the piano", "chess")),
    ("cooks", "cooked", "will cook", ("dinner", "rice", "soup")),
    ("opens", "opened", "will open", ("the door", "the window", "the shop")),
    ("paints", "painted", "will paint", ("the fence", "a picture", "the kitchen")),
    ("writes", "wrote", "will write", ("a letter", "a poem", "an email")),
    ("eats", "ate", "will eat", ("an apple", "breakfast", "lunch")),
    ("drinks", "drank", "will drink", ("tea", "coffee", "water")),
    ("buys", "bought", "will buy", ("a car", "some bread", "new shoes")),
    ("sees", "saw", "will see", ("a film", "the doctor", "a bird")),
    ("cleans", "cleaned", "will clean", ("the room", "the car", "the windows")),
    ("visits", "visited", "will visit", ("Lyon", "her aunt", "the museum")),
)

# (adjective): "I am ..." rewritten about someone else.
FEELINGS: tuple[str, ...] = (
    "tired",
    "happy",
    "hungry",
    "busy",
    "late",
    "ready",
    "cold",
    "sorry",
    "bored",
    "excited",
)
