/**
 * Prometheus metrics (prom-client). One `Metrics` object per process (or per test), each on
 * its own registry. Every drop, rejection and failure in the pipeline has a counter here,
 * labelled with a stable error code where there is one.
 */
import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
} from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  readonly activeCalls: Gauge;
  readonly activeStreams: Gauge;
  readonly callsTotal: Counter<'source' | 'outcome'>;
  readonly upgradesRejected: Counter<'reason'>;
  readonly framesIn: Counter<'source'>;
  readonly framesDropped: Counter<'source' | 'reason'>;
  readonly ingestEvents: Counter<'source' | 'event'>;
  readonly gapFillMs: Counter<'source'>;
  readonly keepaliveSilenceMs: Counter;
  readonly asrSessions: Counter<'model' | 'outcome'>;
  readonly asrReconnects: Counter<'model' | 'reason'>;
  readonly asrErrors: Counter<'model' | 'code'>;
  readonly asrFailovers: Counter<'from' | 'to' | 'reason'>;
  readonly asrActiveSessions: Gauge<'model'>;
  readonly asrStartQueueWaitMs: Histogram<'model'>;
  readonly asrReplayDroppedMs: Counter<'model'>;
  readonly asrAudioSentMs: Counter<'model'>;
  readonly frameToAsrSendMs: Histogram;
  readonly utterancesEnqueued: Counter<'model'>;
  readonly utterancesPersisted: Counter;
  readonly utteranceDuplicates: Counter;
  readonly enqueueErrors: Counter<'job'>;
  readonly outboxDropped: Counter<'job' | 'reason'>;
  readonly outboxJobs: Gauge;
  readonly jobsFailed: Counter<'job'>;
  readonly finalToEnqueuedMs: Histogram;
  readonly enqueuedToPersistedMs: Histogram;
  readonly queueLagMs: Gauge<'queue'>;
  readonly queueWaiting: Gauge<'queue'>;
  /** Alert delivery (src/alerts/delivery/): channel = supervisor | redis | webhook. */
  readonly alertsDelivered: Counter<'channel'>;
  readonly alertDeliveryFailures: Counter<'channel' | 'final'>;
  /** hop = commit (final received → row committed) | deliver (committed → delivered, by channel). */
  readonly alertLatencyMs: Histogram<'hop' | 'channel'>;
  readonly supervisorSockets: Gauge;
  readonly rtpLostPackets: Counter;
  readonly sipRequests: Counter<'method'>;
  readonly sipRejections: Counter<'reason'>;
  readonly analyticsRuns: Counter<'kind' | 'outcome'>;
  readonly alertsRaised: Counter<'severity' | 'status'>;
  readonly liveEventsDropped: Counter<'reason'>;
}

export function createMetrics(options: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'callscribe_' });
  const registers = [registry];
  const latencyBuckets = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];
  return {
    registry,
    activeCalls: new Gauge({ name: 'callscribe_active_calls', help: 'Calls being ingested now', registers }),
    activeStreams: new Gauge({ name: 'callscribe_active_speaker_streams', help: 'Speaker streams (one per role) being transcribed now', registers }),
    callsTotal: new Counter({ name: 'callscribe_calls_total', help: 'Calls ended, by source and outcome', labelNames: ['source', 'outcome'], registers }),
    upgradesRejected: new Counter({ name: 'callscribe_ingest_upgrades_rejected_total', help: 'WebSocket upgrades refused, by reason', labelNames: ['reason'], registers }),
    framesIn: new Counter({ name: 'callscribe_ingest_frames_total', help: 'Telephony frames received', labelNames: ['source'], registers }),
    framesDropped: new Counter({ name: 'callscribe_ingest_frames_dropped_total', help: 'Telephony frames dropped, by error code', labelNames: ['source', 'reason'], registers }),
    ingestEvents: new Counter({ name: 'callscribe_ingest_events_total', help: 'Non-media telephony events, by type (unknown types included)', labelNames: ['source', 'event'], registers }),
    gapFillMs: new Counter({ name: 'callscribe_ingest_gap_fill_ms_total', help: 'Silence inserted for timeline gaps, ms', labelNames: ['source'], registers }),
    keepaliveSilenceMs: new Counter({ name: 'callscribe_asr_keepalive_silence_ms_total', help: 'Silence sent to the recogniser because the line went quiet, ms', registers }),
    asrSessions: new Counter({ name: 'callscribe_asr_sessions_total', help: 'ASR tasks started, by outcome', labelNames: ['model', 'outcome'], registers }),
    asrReconnects: new Counter({ name: 'callscribe_asr_reconnects_total', help: 'ASR reconnects, by reason code', labelNames: ['model', 'reason'], registers }),
    asrErrors: new Counter({ name: 'callscribe_asr_errors_total', help: 'ASR errors, by stable code', labelNames: ['model', 'code'], registers }),
    asrFailovers: new Counter({ name: 'callscribe_asr_failovers_total', help: 'Speaker streams switched to the next model mid-call, by models and the error code that caused it', labelNames: ['from', 'to', 'reason'], registers }),
    asrActiveSessions: new Gauge({ name: 'callscribe_asr_active_sessions', help: 'Open ASR connections', labelNames: ['model'], registers }),
    asrStartQueueWaitMs: new Histogram({ name: 'callscribe_asr_start_wait_ms', help: 'Time a task start waited for the per-model rate limit', labelNames: ['model'], buckets: [0, 10, 50, 100, 250, 500, 1000, 2000, 5000], registers }),
    asrReplayDroppedMs: new Counter({ name: 'callscribe_asr_replay_dropped_ms_total', help: 'Audio dropped from the bounded replay buffer, ms', labelNames: ['model'], registers }),
    asrAudioSentMs: new Counter({ name: 'callscribe_asr_audio_sent_ms_total', help: 'Audio sent to the recogniser, ms (resends included)', labelNames: ['model'], registers }),
    frameToAsrSendMs: new Histogram({ name: 'callscribe_frame_to_asr_send_ms', help: 'Telephony frame received → audio chunk sent to the recogniser', buckets: [1, 5, 10, 20, 50, 100, 150, 200, 500, 1000], registers }),
    utterancesEnqueued: new Counter({ name: 'callscribe_utterances_enqueued_total', help: 'Final sentences enqueued', labelNames: ['model'], registers }),
    utterancesPersisted: new Counter({ name: 'callscribe_utterances_persisted_total', help: 'Utterances written to Postgres', registers }),
    utteranceDuplicates: new Counter({ name: 'callscribe_utterances_duplicate_total', help: 'Utterance jobs whose row already existed', registers }),
    enqueueErrors: new Counter({ name: 'callscribe_enqueue_errors_total', help: 'Jobs that could not be added to the queue', labelNames: ['job'], registers }),
    outboxDropped: new Counter({ name: 'callscribe_queue_outbox_dropped_total', help: 'Jobs dropped by the producer outbox, by job and reason (overflow, rejected, closed)', labelNames: ['job', 'reason'], registers }),
    outboxJobs: new Gauge({ name: 'callscribe_queue_outbox_jobs', help: 'Jobs waiting in the producer outbox for Redis', registers }),
    jobsFailed: new Counter({ name: 'callscribe_jobs_failed_total', help: 'Job attempts that failed (retried or not)', labelNames: ['job'], registers }),
    finalToEnqueuedMs: new Histogram({ name: 'callscribe_final_to_enqueued_ms', help: 'Final sentence received → job enqueued', buckets: latencyBuckets, registers }),
    enqueuedToPersistedMs: new Histogram({ name: 'callscribe_enqueued_to_persisted_ms', help: 'Job enqueued → row committed', buckets: latencyBuckets, registers }),
    queueLagMs: new Gauge({ name: 'callscribe_queue_lag_ms', help: 'Age of the oldest waiting job', labelNames: ['queue'], registers }),
    queueWaiting: new Gauge({ name: 'callscribe_queue_waiting_jobs', help: 'Jobs waiting', labelNames: ['queue'], registers }),
    alertsDelivered: new Counter({ name: 'callscribe_alerts_delivered_total', help: 'Alerts delivered, by channel (supervisor: once per alert per process)', labelNames: ['channel'], registers }),
    alertDeliveryFailures: new Counter({ name: 'callscribe_alert_delivery_failures_total', help: 'Failed alert delivery attempts, by channel; final="true" when no retry follows', labelNames: ['channel', 'final'], registers }),
    alertLatencyMs: new Histogram({ name: 'callscribe_alert_latency_ms', help: 'Alert latency by hop: commit = final sentence received → alert committed; deliver = committed → delivered (by channel)', labelNames: ['hop', 'channel'], buckets: [5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 60_000], registers }),
    supervisorSockets: new Gauge({ name: 'callscribe_supervisor_sockets', help: 'Supervisor feed WebSockets open now', registers }),
    rtpLostPackets: new Counter({ name: 'callscribe_rtp_lost_packets_total', help: 'RTP packets declared lost by the jitter buffer (filled with silence)', registers }),
    sipRequests: new Counter({ name: 'callscribe_sip_requests_total', help: 'SIP requests received, by method', labelNames: ['method'], registers }),
    sipRejections: new Counter({ name: 'callscribe_sip_rejections_total', help: 'SIP requests or datagrams rejected, by reason code', labelNames: ['reason'], registers }),
    analyticsRuns: new Counter({ name: 'callscribe_analytics_runs_total', help: 'QA analytics evaluations, by kind (live, postcall) and outcome', labelNames: ['kind', 'outcome'], registers }),
    alertsRaised: new Counter({ name: 'callscribe_alerts_raised_total', help: 'Alerts stored, by severity and status (open, suppressed)', labelNames: ['severity', 'status'], registers }),
    liveEventsDropped: new Counter({ name: 'callscribe_live_events_dropped_total', help: 'Live events not sent to a supervisor socket, by reason (backpressure, invalid)', labelNames: ['reason'], registers }),
  };
}
