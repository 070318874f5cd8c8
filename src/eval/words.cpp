#include "eval/words.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <string_view>

#include "core/error.h"

namespace ariadne::eval {

namespace {

// Common English words, written for this project (one list, alphabetic, lowercase, 3-10 letters). Words
// that also occur in the noise sentences or in the task templates are dropped when the list is built
// (see word_list), so a reference word never appears in the wording around it.
constexpr std::string_view kBuiltinWords = R"(
able above absence absorb abstract academy accent accept access accident account accuse acid acorn acre
across action active actor adapt address adjust admire adopt adult advance advice affair afford afraid
agency agenda agent agree ahead aircraft airport aisle alarm album alert alien alley allow almond alpine
alter amber amount anchor angle animal ankle annual answer antique anxiety apart apology appeal apple
apron arch archive arena argue armor army arrange arrest arrival arrow artist ascent aspect assault asset
assist athlete atlas attach attack attempt attic attract auction audio author autumn avenue average
avocado award awful axis bacon badge badger bakery balance balcony ballet balloon bamboo banana bandit
banner banquet barber bargain barley barrel basket battle beach beacon beard beaver bedroom beetle beggar
behave belief bench berry bicycle bishop bitter blanket blazer blend blind blossom blouse board bonus
border borrow bottle boulder bounce bowl boxer bracket brain brake branch brass brave bread breath brick
bride bridge brief bright broken bronze brother brush bubble bucket budget buffalo bullet bundle burden
bureau burger butter button buyer cabbage cabin cabinet cable cactus camel camera campus canal candle
candy cannon canoe canvas canyon capital captain carbon cargo carpet carrot cart castle casual catalog
cattle cause caution cave ceiling celery cement census cereal certain chair chalk chamber champion change
channel chapter charcoal charge charity chart chase cheap check cheese chef cherry chest chicken chief
child chimney choice chorus cider cigar cinema circle circus citizen city civil claim clarify clever
client cliff climate clinic clock closet cloth clown club cluster coach coast coconut coffee coin collar
collect colony column combine comedy comfort comic command comment common company compass complex
concert confirm connect consider control convince cookie copper coral corner cottage cotton couch
country couple course cousin cover coyote crack cradle craft crane crash crater crayon cream credit
creek crew cricket crime crisp critic crop cross crowd crown cruise crumble crystal cube culture
cupboard curious current curtain cushion custom cycle damage dancer danger daughter dealer debate decade
decide decline defense degree delay deliver demand denial dentist depart deposit depth deputy desert
design desk detail device diamond diary diesel dinner dinosaur diploma direct dirt disease dish doctor
document dolphin domain donkey donor double dragon drama drawer dream dress drift drink driver drum
duck dune dust eager eagle early earth easel echo economy edge editor effort elbow elder electric
element elephant elevator elite embassy ember emerge emotion empire employ enemy energy engine enjoy
enough entry envelope episode equal erode error escape essay estate eternal evidence evolve exact
example excess exchange excite exhaust exhibit exile exist exotic expand expect expert explain export
expose extend fabric faculty faint faith falcon family famous fancy fantasy farmer fashion father
fatigue fault favorite feather feature federal fence festival fever fiber fiction figure film filter
final finger finish firm fiscal fitness flag flame flash flavor fleet flight float flock floor flower
fluid flute foam focus follow forest forget fork fortune forum fossil fountain fox fragile frame
freight fringe frog frost frozen fruit fuel funny furnace future gadget galaxy gallery garage garbage
garden garlic garment gather gauge gentle genuine ghost giant ginger giraffe glacier glance glass globe
glory glove glue goat goblet golden gorilla gospel gossip govern gown grace grain grammar grape
graphic gravel gravity great green grid grief grocery ground group guard guest guide guitar habit
hammer hamster handle harbor hardware harvest hatch hawk hazard health heart heavy hedge height helmet
hero hidden highway hint history hobby hockey holiday hollow honey hood horizon horse hospital host
hotel hour humble humor hunger hunter hurdle husband hybrid icon idea identify idle ignore image
impact impose improve impulse inch income index infant inform inhale inner insect inside install
invest invite island issue ivory jacket jaguar jealous jelly jewel journey judge juice jungle junior
justice kangaroo kernel kettle keyboard kidney kingdom kitchen kite kitten kiwi knife ladder lady
lagoon lamp language laptop large laundry lava lawn lawyer layer leader leather lecture legend lemon
leopard lesson letter level liberty library license lift limit linen lion liquid lizard lobster
local lock lonely lottery loyal lumber lunar lunch luxury lyrics machine magnet maid mammal manage
mandate mango mansion manual maple marble margin marine market marriage mask master matrix meadow
measure medal media melody member memory mention menu mercy merit message metal method middle
midnight million mineral minute mirror misery mission mixture mobile model modify moment monitor
monkey monster month morning mosquito mother motion motor mountain mouse muffin muscle museum
mushroom music mustard mutual myself mystery napkin narrow nation nature nephew nerve network
neutral noble noodle normal notable notebook novel nuclear number nurse oak object oblige obscure
observe obtain ocean october odor offer office olive omit onion opera opinion oppose option orange
orbit orchard order organ orient origin orphan ostrich outdoor outer output oval oven owner oxygen
oyster paddle page palace palm panda panel panic panther paper parade parent parrot party patch
patrol pause peanut pear pelican pencil penguin pepper perfect permit person pet phone photo phrase
piano picnic picture piece pigeon pilot pink pioneer pipe pistol pitch pizza planet plastic plate
player please pledge plenty plug plunge poem poet pony popular portion position possible postcard
potato pottery poverty powder power practice praise predict prefer prepare present pretty prevent
price pride primary print priority prison private prize problem process produce profit program
project promote proof property prosper protect proud provide public pudding pulse pumpkin punch
pupil puppy purchase purple puzzle pyramid quality quantum quarter question quiz rabbit raccoon
radar radio rail rainbow raise rally ranch random range rapid rare raven razor ready real reason
rebel rebuild recall receipt record recycle reduce reflect reform refuse region regret reject relax
release relief remain remedy remind remote remove render rent repair repeat replace report require
rescue resemble resist resource response result retire retreat return reunion reveal review reward
rhythm ribbon rice rich ride rifle ring riot ripple ritual rival robot rocket romance roof rookie
rose rotate rough royal rubber rude rug rule runway rural saddle sadness safety sail salad salmon
salon salt salute sample sand satisfy sauce sausage scale scan scatter scene scheme school
science scissors scorpion scout scrap screen script scrub sculpture season second secret section
security segment select senior sense sentence series service session settle setup shadow shaft
shallow share shed shell sheriff shield shift shine ship shiver shock shoe shoot shop short shoulder
shove shrimp shrug shuffle sibling siege sight signal silent silk silly silver similar simple siren
sister situate skate sketch skill skin skirt skull slab slam sleep slender slice slide slight slim
slogan slot slush small smart smile smoke smooth snack snake snap sniff snow soap soccer social sock
soda soft solar soldier solid solution solve someone song sort soul sound soup source south space
spare spatial spawn speak special speed spell spend sphere spice spider spike spin spirit split
spoil sponsor spoon sport spot spray spread spring square squeeze squirrel stable stadium staff stage
stairs stamp stand start state steak steel stem step stereo stick still sting stock stomach stool
story stove strategy street strike strong struggle student stuff stumble style subject submit subway
success sugar suggest suit summer sunset supply supreme surface surge surprise surround survey
suspect sustain swallow swamp swap swear sweet swift swim swing switch sword symbol symptom syrup
system table tackle tactic tail talent tank tape target task taxi teach team tenant tennis tent term
test text thank theme theory thought thrive throw thumb thunder ticket tide tiger tilt timber tiny
tired tissue title toast tobacco today toddler toe together toilet token tomato tomorrow tone tongue
tonight tool tooth topic topple torch tornado tortoise toss total tourist toward tower town toy
track trade traffic tragic train transfer trap trash travel tray treat trial tribe trick trigger
trim trip trophy trouble truck truly trumpet trust truth tuition tumble tuna tunnel turkey turn
turtle twelve twenty twice twin twist type typical ugly umbrella unable unaware uncle uncover under
undo unfair unfold unhappy uniform unique unit universe unknown unlock until unusual unveil update
upgrade uphold upon upper upset urban usage useful useless usual utility vacant vacuum vague valid
valley valve van vanish vapor various vast vault vehicle velvet vendor venture venue verb verify
version very vessel veteran viable vibrant vicious victory video view village vintage violin virtual
virus visa visit visual vital vivid vocal voice volcano volume vote voyage wage wagon walnut wander
warfare warm warrior wasp waste watch water wave wealth weapon weasel wedding weekend weird welcome
whale wheat wheel whisper width wife wild window wine wing wink winner winter wire wisdom wise wish
witness wolf woman wonder wool world worry worth wreck wrestle wrist write yard yellow young youth
zebra zero zone acrobat admiral almanac amulet antler anvil apricot aquarium arbor armchair artisan
asteroid aurora avalanche backpack bagpipe ballad bandage banjo barn baron basin bazaar beetroot
biscuit blimp blizzard bluebell bobcat bonfire bookcase bouquet boxcar bracelet bramble brisket
broccoli brooch buckle bugle bulldozer bungalow burrow butterfly buzzard cabaret cactus caldron
camellia canary candor canopy caramel caravan cardinal carnival carousel cascade cashew casket
cathedral cauldron cavern cedar cellar chalice chariot cheetah chestnut chisel chowder cinnamon
citadel clarinet clover cobra cockpit cocoa codfish comet compost condor conifer cornet corridor
costume cougar courier crab cranberry crevice crocodile crossbow crumpet cucumber cupola cymbal
daffodil dagger dahlia dandelion dazzle delta denim dewdrop dingo dirigible domino doorbell
dormouse dragonfly drizzle dumpling eclipse eggplant elk emerald emu engraving ermine estuary
falconer fennel ferret ferry fiddle fig firefly fjord flagpole flamingo flannel flint flotilla
fondue footpath forklift foxglove freckle fritter fudge gable galleon gazebo gazelle gecko
geranium geyser gingham glider goblin gondola gooseberry gopher granite grasshopper griddle
griffin grotto guava gumdrop gymnasium hacksaw haddock halibut hammock harmonica harpoon hazelnut
heather hedgehog hemlock heron hibiscus hickory hippo hornet hourglass huckleberry hummingbird
hyacinth iceberg igloo iguana inkwell jackal jasmine javelin jellyfish jigsaw jonquil juniper
kayak kestrel kiln kimono koala kumquat labyrinth lacquer ladle lantern larch lark lattice
lavender leek lemonade lentil lettuce lichen lilac limerick limestone lobby locket locomotive
lollipop loom lotus lynx macaroni magnolia magpie mahogany mallet mandolin manatee mantis marigold
marmalade marmot marsh marten mascot meerkat melon meringue meteor mimosa minnow mistletoe moccasin
mollusk monsoon moose mortar moth mulberry mussel mustang nectar nettle nightjar nutmeg oatmeal
oboe ocelot octopus omelet opal orca orchid oregano otter outpost owl paddock pagoda palette
pancake pansy papaya paprika parasol parcel parsley parsnip pastry pavilion peacock pebble pecan
pendant peony periscope petunia pheasant piccolo pickle pinecone pinwheel pistachio plaza plover
plum poncho poppy porch porcupine porridge possum pretzel primrose prism puffin quail quarry
quartz quiche quill quilt radish raisin rampart raspberry rattle redwood reindeer rhubarb
riverbank robin rosemary ruby rucksack saffron sage sapphire sardine satchel sawmill saxophone
scallop scarecrow scarf schooner scone seahorse seaweed sequoia sesame shamrock sherbet shovel
shutter skillet skylark sled sleigh slipper sloth snail snapdragon snorkel sorbet sparrow spatula
spinach spruce squash stagecoach starfish stingray stork strawberry sundial sunflower swallow swan
sycamore tadpole tambourine tangerine tapestry tarragon teacup teapot terrier thimble thistle
thrush thyme tinsel toadstool toboggan toffee tortilla toucan trellis trombone trout truffle tulip
turban turnip turquoise tweed typewriter ukulele unicorn urchin vanilla vase velcro veranda
vinegar viola violet vulture waffle wagtail walrus wardrobe warbler watercress weathervane wharf
whistle wicker wigwam willow windmill wisteria wombat woodpecker wren yacht yak yarrow yogurt yodel
zeppelin zinnia zucchini
)";

// Bland filler with no digits, no names and no list words (the list drops any word these use).
constexpr std::string_view kNoiseSentences[] = {
    "The weather stayed mild and the clouds drifted slowly across the sky.",
    "A quiet path wound through the meadow toward a low wall.",
    "Somewhere nearby, water trickled over smooth pebbles in a shallow stream.",
    "The afternoon passed without anything worth remembering.",
    "Leaves rustled gently whenever a breeze came through the trees.",
};

bool valid_word(std::string_view w) {
  if (w.size() < 3 || w.size() > 10) return false;
  return std::all_of(w.begin(), w.end(), [](char c) { return c >= 'a' && c <= 'z'; });
}

}  // namespace

std::span<const std::string_view> noise_sentences() {
  return kNoiseSentences;
}

std::vector<std::string> lowercase_words(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (std::isalpha(static_cast<unsigned char>(c))) {
      cur += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::vector<std::string> word_list(const std::string& path,
                                   std::span<const std::string_view> reserved_texts) {
  std::string text;
  if (path.empty()) {
    text = kBuiltinWords;
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("{}: cannot open the word list (--words)", path);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::set<std::string> reserved;
  for (std::string_view s : noise_sentences())
    for (std::string& w : lowercase_words(s)) reserved.insert(std::move(w));
  for (std::string_view s : reserved_texts)
    for (std::string& w : lowercase_words(s)) reserved.insert(std::move(w));
  // A word list file has one word per line; only lines that are a word of 3-10 lowercase letters count
  // (capitalised names, possessives and the like are skipped, as the spec's list asks).
  std::vector<std::string> words;
  std::set<std::string> seen;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find_first_of(" \n\r\t", pos);
    if (end == std::string::npos) end = text.size();
    const std::string w = text.substr(pos, end - pos);
    pos = end + 1;
    if (!valid_word(w) || reserved.count(w) != 0 || !seen.insert(w).second) continue;
    words.push_back(w);
  }
  // Sorted, so that the list (and every instance drawn from it) does not depend on the file's order.
  std::sort(words.begin(), words.end());
  if (words.size() < 100)
    fail("{}: the word list has only {} usable words (lowercase, 3-10 letters); at least 100 are needed",
         path.empty() ? "built-in list" : path, words.size());
  return words;
}

}  // namespace ariadne::eval
