// clients.mjs -- real npm clients against agentd serve, unchanged, the way
// their documentation uses them (tests/integration/test_clients.py runs it).
//
//   node clients.mjs MODE BASE_URL     BASE_URL: http://127.0.0.1:PORT/v1
//
// Prints one JSON line with what the client got; exits 1 (with the error
// on stderr) when the client threw.
import OpenAI from 'openai';

const [mode, baseURL] = process.argv.slice(2);
const apiKey = 'sk-not-checked';

async function openaiCreate() {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
  const r = await client.responses.create({ model: 'agentd', input: 'Add 2 and 3' });
  return { text: r.output_text, status: r.status, types: r.output.map((i) => i.type),
           agentd: (r.agentd?.tool_calls ?? []).map((t) => [t.name, t.output]) };
}

async function openaiCreateStream() {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
  const stream = await client.responses.create({ model: 'agentd', input: 'Add 2 and 3', stream: true });
  let text = '';
  const types = [];
  let completed = null;
  for await (const ev of stream) {
    types.push(ev.type);
    if (ev.type === 'response.output_text.delta') text += ev.delta;
    if (ev.type === 'response.completed') completed = ev.response;
  }
  return { text, types, status: completed?.status, final: completed?.output_text ?? null,
           items: completed ? completed.output.map((i) => i.type) : [] };
}

async function openaiStreamHelper() {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
  const stream = client.responses.stream({ model: 'agentd', input: 'Add 2 and 3' });
  let deltas = '';
  stream.on('response.output_text.delta', (ev) => { deltas += ev.delta; });
  const final = await stream.finalResponse();
  return { deltas, text: final.output_text, status: final.status,
           items: final.output.map((i) => i.type) };
}

async function openaiChatStream() {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
  const stream = client.chat.completions.stream({
    model: 'agentd', messages: [{ role: 'user', content: 'Add 2 and 3' }] });
  let deltas = '';
  stream.on('content', (d) => { deltas += d; });
  const final = await stream.finalChatCompletion();
  return { deltas, text: final.choices[0].message.content, finish: final.choices[0].finish_reason };
}

async function aiSdk() {
  const { streamText, generateText } = await import('ai');
  const { createOpenAI } = await import('@ai-sdk/openai');
  const openai = createOpenAI({ baseURL, apiKey });
  const s = streamText({ model: openai.responses('agentd'), prompt: 'Add 2 and 3' });
  let streamed = '';
  for await (const t of s.textStream) streamed += t;
  const g = await generateText({ model: openai.responses('agentd'), prompt: 'Add 2 and 3' });
  const c = await generateText({ model: openai.chat('agentd'), prompt: 'Add 2 and 3' });
  return { streamed, generated: g.text, chat: c.text };
}

async function agents() {
  const { Agent, run, setDefaultOpenAIClient, setOpenAIAPI, setTracingDisabled } =
    await import('@openai/agents');
  setTracingDisabled(true);
  setDefaultOpenAIClient(new OpenAI({ baseURL, apiKey, maxRetries: 0 }));
  setOpenAIAPI('responses');
  const agent = new Agent({ name: 'calc', instructions: 'You add numbers.', model: 'agentd' });
  const first = await run(agent, 'Add 2 and 3');
  const second = await run(agent, 'And now add 4', { previousResponseId: first.lastResponseId });
  return { first: first.finalOutput, second: second.finalOutput,
           firstId: first.lastResponseId, secondId: second.lastResponseId };
}

const modes = {
  'openai-create': openaiCreate,
  'openai-create-stream': openaiCreateStream,
  'openai-stream-helper': openaiStreamHelper,
  'openai-chat-stream': openaiChatStream,
  'ai-sdk': aiSdk,
  agents,
};

if (!modes[mode] || !baseURL) {
  console.error('usage: node clients.mjs MODE BASE_URL; modes: ' + Object.keys(modes).join(', '));
  process.exit(2);
}
try {
  const out = await modes[mode]();
  process.stdout.write(JSON.stringify(out) + '\n');
} catch (e) {
  console.error(`${mode}: ${e?.stack ?? e}`);
  process.exit(1);
}
