import { describe, expect, it } from 'vitest';
import { ConfigError, loadEnv, twilioPublicUrl } from './env.js';

describe('loadEnv', () => {
  it('applies the documented defaults, with the real DashScope endpoints', () => {
    const env = loadEnv({});
    expect(env.PORT).toBe(8080);
    expect(env.DATABASE_URL).toBe('postgres://postgres@127.0.0.1:5432/callscribe');
    expect(env.REDIS_URL).toBe('redis://127.0.0.1:6379');
    expect(env.DASHSCOPE_INFERENCE_URL).toBe('wss://dashscope.aliyuncs.com/api-ws/v1/inference');
    expect(env.DASHSCOPE_REALTIME_URL).toBe('wss://dashscope.aliyuncs.com/api-ws/v1/realtime');
    expect(env.DASHSCOPE_API_KEY).toBeUndefined();
    expect(env.ASR_MODEL).toBe('paraformer-realtime-8k-v2');
    expect(env.MIGRATE_ON_START).toBe(true);
  });

  it('treats empty values as unset (docker compose passes VAR= for blanks)', () => {
    expect(loadEnv({ DASHSCOPE_API_KEY: '', PORT: '' }).DASHSCOPE_API_KEY).toBeUndefined();
  });

  it('names every bad variable', () => {
    let caught: unknown;
    try {
      loadEnv({ PORT: 'eighty', REDIS_URL: 'http://x', LOG_LEVEL: 'loud', MIGRATE_ON_START: 'maybe' });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const message = (caught as Error).message;
    for (const name of ['PORT', 'REDIS_URL', 'LOG_LEVEL', 'MIGRATE_ON_START']) expect(message).toContain(name);
  });

  it('rejects out-of-range paraformer parameters', () => {
    expect(() => loadEnv({ ASR_MAX_SENTENCE_SILENCE_MS: '100' })).toThrow(/ASR_MAX_SENTENCE_SILENCE_MS/);
    expect(() => loadEnv({ ASR_KEEPALIVE_AFTER_MS: '30000' })).toThrow(/ASR_KEEPALIVE_AFTER_MS/);
  });
});

describe('twilioPublicUrl', () => {
  it('builds the wss:// URL Twilio signs from PUBLIC_URL, never from request headers', () => {
    expect(twilioPublicUrl({ PUBLIC_URL: 'https://cs.example.com' })).toBe('wss://cs.example.com/twilio');
    expect(twilioPublicUrl({ PUBLIC_URL: 'wss://cs.example.com/base/' })).toBe('wss://cs.example.com/base/twilio');
    expect(twilioPublicUrl({ PUBLIC_URL: undefined })).toBeUndefined();
  });
});
