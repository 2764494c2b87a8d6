/**
 * The training text of synthetic tokenizers: written for this project, mixing English
 * prose, code, numbers and several scripts so that the learned merges cover words,
 * indentation, digits and multi-byte characters. It must not contain special-token
 * text (`<|...|>`, `<s>`, `<0x..>`), which would turn into ordinary merges.
 */
export const SYNTHETIC_CORPUS = String.raw`The lighthouse keeper wrote in her log every evening, whether or not anything had happened.
On most days nothing had: the wind turned, the tide came in and went out, and the gulls argued over the rocks.
She wrote it down anyway, because a record that skips the quiet days cannot be trusted on the loud ones.
When the storm of the third winter arrived, the log was the only thing that told the harbour master how long the light had been out.
It's a habit worth keeping. We'll see whether the new keeper agrees; they're younger and they've never lived through a winter here.
I'd rather they learn it from the log than from the sea. You're welcome to read it, if you don't mind the handwriting.

Small models are useful for testing because they load quickly and fail loudly.
A test that takes an hour is a test that nobody runs, and a test that nobody runs is not a test at all.
The model reads the prompt, computes the next token, and repeats until it reaches the end of the answer.
Each layer normalizes its input, applies attention over the previous tokens, and then a feed-forward network.
The tokenizer turns text into numbers and back again; if it is wrong, everything after it is wrong too.

function tokenize(text: string): number[] {
  const ids: number[] = [];
  for (const word of text.split(" ")) {
    if (word.length === 0) continue;
    ids.push(lookup(word) ?? UNKNOWN_ID);
  }
  return ids;
}

export async function loadModel(path: string, options = {}) {
  const response = await fetch(path);
  if (!response.ok) throw new Error("failed to load " + path + ": " + response.status);
  const buffer = await response.arrayBuffer();
  return parseModel(new Uint8Array(buffer), options);
}

def mean_and_variance(values):
    total = 0.0
    for value in values:
        total += value
    mean = total / len(values)
    variance = sum((v - mean) ** 2 for v in values) / len(values)
    return mean, variance

class Counter:
    def __init__(self):
        self.counts = {}

    def add(self, key, amount=1):
        self.counts[key] = self.counts.get(key, 0) + amount

for (int i = 0; i < n; i++) {
    sum += a[i] * b[i];
}
if (x != y && (z >= 10 || w <= -3)) { return x % 7; }
SELECT name, count(*) FROM orders WHERE total > 100 GROUP BY name ORDER BY 2 DESC;
{"id": 42, "name": "example", "tags": ["alpha", "beta"], "ok": true, "ratio": 0.75}

In 1969, 600 million people watched the landing; in 2024 the same video had been viewed 12345678 more times.
The invoice lists 3 items at $19.99, 7 items at $4.50 and 1 item at $1,250.00, for a total of $1,321.43.
Call 555-0100 before 10:30, or write to room 221B. Version 2.14.3 fixed bug #8812 on 2023-11-05.
Pi is about 3.14159265358979, e is about 2.718281828, and the answer is still 42.

Le gardien du phare écrivait chaque soir dans son journal, même quand il ne s'était rien passé.
Les élèves étudient à l'école près de la forêt; ils préfèrent les crêpes et le café au lait.
Der Leuchtturmwärter schrieb jeden Abend in sein Tagebuch, auch wenn nichts geschehen war.
Über die Brücke gehen täglich viele Menschen; die Straße ist schön, aber die Größe überrascht.
El guardián del faro escribía cada noche en su diario, aunque no hubiera pasado nada.
¿Dónde está la estación? ¡Qué día tan bonito! El niño comió una manzana y un melón.
Смотритель маяка каждый вечер писал в журнал, даже если ничего не случилось.
Мы читали книгу о море, и ветер шумел за окном всю ночь.
Ο φύλακας του φάρου έγραφε κάθε βράδυ στο ημερολόγιό του.
灯塔看守人每天晚上都在日志里写字，即使什么也没有发生。
我们今天学习中文，明天去图书馆看书。天气很好，大家都很高兴。
灯台守は毎晩日誌を書いた。何も起こらなかった日でも、彼女は書き続けた。
東京の天気は晴れです。ありがとうございます。よろしくお願いします。
등대지기는 아무 일도 없던 날에도 매일 저녁 일지를 썼다.
오늘은 날씨가 좋습니다. 감사합니다.
كان حارس المنارة يكتب في دفتره كل مساء.
प्रकाशस्तंभ का रखवाला हर शाम अपनी डायरी लिखता था।
Emoji are characters too: 😀 🎉 🚀 ❤️ 👍🏽 🇫🇷 and they take four bytes each, sometimes more.

	Tabs and    runs of spaces    matter for code.
		Nested blocks are indented twice.
Line one
Line two

Line four after a blank line.
The quick brown fox jumps over the lazy dog. The lazy dog does not mind.
She sells sea shells by the sea shore, and the shells she sells are surely sea shells.
How much wood would a woodchuck chuck if a woodchuck could chuck wood?
`;
