package healthd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Lease keys. Each (backend, outage, event) has a key of its own, so that
// exactly one instance claims it; the outage key holds the start of the
// current outage, agreed by all instances. Backend URLs go in as they are:
// keys are binary-safe, and each operation touches one key only (Redis
// Cluster friendly).
const (
	keyPrefix      = "getaway:healthd:"
	eventDown      = "down"
	eventRecovered = "recovered"
)

func outageKey(backend string) string { return keyPrefix + "outage:" + backend }

func eventKey(event, backend string, start int64) string {
	return keyPrefix + event + ":" + strconv.FormatInt(start, 10) + ":" + backend
}

// maxQueue bounds the notifications waiting to be sent; beyond it new ones
// are dropped and logged, so that a dead Apprise cannot grow memory.
const maxQueue = 256

// jobKind is what the sender does with a job.
type jobKind int

const (
	// jobDown sends a "down" notification already claimed.
	jobDown jobKind = iota
	// jobRecovered claims the "recovered" notification of an outage, sends
	// it if claimed, then releases the outage record.
	jobRecovered
	// jobRelease releases the outage record of an outage that ended
	// without a "down" notification.
	jobRelease
)

// job is one queued piece of notification work.
type job struct {
	kind    jobKind
	backend string
	start   int64         // outage start, ms since the epoch
	downFor time.Duration // how long the backend has been (jobDown) or was (jobRecovered) down
	reason  string        // why it is down (jobDown)
}

// notifier sends notifications to Apprise from one goroutine of its own,
// so that checks never wait on Apprise. The goroutine starts when a job is
// queued and ends when the queue is empty, or on close.
type notifier struct {
	cfg      Config
	lease    Lease
	instance string
	client   *http.Client
	log      *zap.Logger

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc

	mu      sync.Mutex
	queue   []job // guarded by mu
	running bool  // the sender goroutine runs; guarded by mu
	closed  bool  // guarded by mu
	sender  sync.WaitGroup
	pending atomic.Int64 // jobs queued or in progress, for tests
}

func newNotifier(cfg Config, lease Lease, instance string, log *zap.Logger) *notifier {
	ctx, cancel := context.WithCancel(context.Background())
	return &notifier{
		cfg:      cfg,
		lease:    lease,
		instance: instance,
		log:      log,
		ctx:      ctx,
		cancel:   cancel,
		// Apprise may well be outside the cluster, so proxy variables
		// apply. A redirect is not followed: it would turn the POST into
		// a GET. Keep-alive is off: notifications are rare, and no idle
		// connection outlives a send.
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:                  http.ProxyFromEnvironment,
				DisableKeepAlives:      true,
				MaxResponseHeaderBytes: 64 << 10,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// claimOutage registers start as the start of backend's current outage
// unless another instance (or this one before a restart) did first, and
// returns the start in force.
func (n *notifier) claimOutage(ctx context.Context, backend string, start int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.NotifyTimeout)
	defer cancel()
	current, _, err := n.lease.Claim(ctx, outageKey(backend), strconv.FormatInt(start, 10), n.cfg.ClaimTTL)
	if err != nil {
		return 0, err
	}
	agreed, err := strconv.ParseInt(current, 10, 64)
	if err != nil || agreed <= 0 {
		// Not ours to fix: keep our own start, notifications still work
		// for this instance.
		n.log.Warn("health lease holds an invalid outage start", zap.String("backend", backend))
		return start, nil
	}
	return agreed, nil
}

// claimEvent claims the notification event of backend's outage that began
// at start, and reports whether this instance is the one to send it.
func (n *notifier) claimEvent(ctx context.Context, event, backend string, start int64) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.NotifyTimeout)
	defer cancel()
	_, claimed, err := n.lease.Claim(ctx, eventKey(event, backend, start), n.instance, n.cfg.ClaimTTL)
	return claimed, err
}

// enqueue queues j without blocking, starting the sender if needed.
func (n *notifier) enqueue(j job) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		n.log.Warn("notification dropped, shutting down", zap.String("backend", j.backend), zap.String("event", j.kind.String()))
		return
	case len(n.queue) >= maxQueue:
		n.log.Error("notification dropped, queue full", zap.String("backend", j.backend), zap.String("event", j.kind.String()))
		return
	}
	n.queue = append(n.queue, j)
	n.pending.Add(1)
	if !n.running {
		n.running = true
		n.sender.Add(1)
		go n.send()
	}
}

// send processes queued jobs in order until the queue is empty.
func (n *notifier) send() {
	defer n.sender.Done()
	for {
		n.mu.Lock()
		if len(n.queue) == 0 || n.closed {
			n.running = false
			n.mu.Unlock()
			return
		}
		j := n.queue[0]
		n.queue[0] = job{}
		n.queue = n.queue[1:]
		n.mu.Unlock()
		n.safeProcess(j)
		n.pending.Add(-1)
	}
}

// close drops what is queued, cancels what is in progress and waits for
// the sender to end.
func (n *notifier) close() {
	n.mu.Lock()
	n.closed = true
	for _, j := range n.queue {
		n.log.Warn("notification dropped, shutting down", zap.String("backend", j.backend), zap.String("event", j.kind.String()))
	}
	n.pending.Add(-int64(len(n.queue)))
	n.queue = nil
	n.mu.Unlock()
	n.cancel()
	n.sender.Wait()
}

func (n *notifier) safeProcess(j job) {
	defer func() {
		if r := recover(); r != nil {
			n.log.Error("notification panicked", zap.String("backend", j.backend),
				zap.Any("panic", r), zap.StackSkip("stack", 1))
		}
	}()
	n.process(j)
}

func (n *notifier) process(j job) {
	switch j.kind {
	case jobDown:
		n.deliver(j, downMessage(j))
	case jobRecovered:
		var claimed bool
		err := n.retry(j, func(ctx context.Context) error {
			var err error
			claimed, err = n.claimEvent(ctx, eventRecovered, j.backend, j.start)
			return err
		})
		switch {
		case err != nil:
			n.log.Error("recovered notification lost, lease unavailable", zap.String("backend", j.backend), zap.Error(err))
		case claimed:
			n.deliver(j, recoveredMessage(j))
		default:
			n.log.Debug("recovered notification already sent", zap.String("backend", j.backend))
		}
		n.release(j)
	case jobRelease:
		n.release(j)
	}
}

// release deletes the outage record of j's outage if it still holds it.
func (n *notifier) release(j job) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.NotifyTimeout)
	defer cancel()
	if err := n.lease.Release(ctx, outageKey(j.backend), strconv.FormatInt(j.start, 10)); err != nil {
		n.log.Warn("health lease release failed", zap.String("backend", j.backend), zap.Error(err))
	}
}

// deliver POSTs m to Apprise, retrying with backoff.
func (n *notifier) deliver(j job, m message) {
	err := n.retry(j, func(ctx context.Context) error { return n.post(ctx, m) })
	if err != nil {
		n.log.Error("notification lost", zap.String("backend", j.backend),
			zap.String("event", j.kind.String()), zap.Int("attempts", n.cfg.NotifyAttempts), zap.Error(err))
		return
	}
	n.log.Info("notification sent", zap.String("backend", j.backend), zap.String("event", j.kind.String()))
}

// retry runs op up to NotifyAttempts times, waiting NotifyRetryBase before
// the second attempt and twice as long before each further one, capped at
// NotifyRetryMax. It gives up at once when the notifier closes.
func (n *notifier) retry(j job, op func(context.Context) error) error {
	wait := n.cfg.NotifyRetryBase
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.NotifyTimeout)
		err := op(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if n.ctx.Err() != nil {
			return errors.Join(err, n.ctx.Err())
		}
		if attempt >= n.cfg.NotifyAttempts {
			return err
		}
		n.log.Warn("notification attempt failed", zap.String("backend", j.backend),
			zap.String("event", j.kind.String()), zap.Int("attempt", attempt),
			zap.Duration("retryIn", wait), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-n.ctx.Done():
			t.Stop()
			return errors.Join(err, n.ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, n.cfg.NotifyRetryMax)
	}
}

// message is one notification.
type message struct {
	title, body string
	// kind is Apprise's notification type: info, success, warning or
	// failure.
	kind string
}

// appriseRequest is the JSON body of an Apprise API notify call. "tag" is
// the field name the Apprise API documents for /notify/<key>.
type appriseRequest struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	Type  string `json:"type"`
	Tag   string `json:"tag,omitempty"`
}

// appriseStatusError is the error of an Apprise call answered with a
// status other than 2xx; such calls are retried.
type appriseStatusError struct {
	// StatusCode is the HTTP status Apprise answered.
	StatusCode int
}

func (e *appriseStatusError) Error() string {
	return "healthd: apprise answered " + strconv.Itoa(e.StatusCode)
}

// post sends m to Apprise once.
func (n *notifier) post(ctx context.Context, m message) error {
	body, err := json.Marshal(appriseRequest{Title: m.title, Body: m.body, Type: m.kind, Tag: n.cfg.AppriseTags})
	if err != nil {
		return fmt.Errorf("healthd: encoding notification: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.AppriseURL, bytes.NewReader(body))
	if err != nil {
		return errors.New("healthd: building apprise request: invalid APPRISE_URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	resp, err := n.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL, whose path is the Apprise key: keep
		// it out of the logs.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("healthd: posting to apprise: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &appriseStatusError{StatusCode: resp.StatusCode}
	}
	return nil
}

func downMessage(j job) message {
	return message{
		kind:  "failure",
		title: "Backend down: " + j.backend,
		body: fmt.Sprintf("%s has been down for %s, since %s. Last error: %s.",
			j.backend, formatDuration(j.downFor), formatTime(j.start), j.reason),
	}
}

func recoveredMessage(j job) message {
	return message{
		kind:  "success",
		title: "Backend recovered: " + j.backend,
		body: fmt.Sprintf("%s is up again after %s of downtime (down since %s).",
			j.backend, formatDuration(j.downFor), formatTime(j.start)),
	}
}

// formatDuration rounds d to the second: "6h0m0s", "1h2m3s".
func formatDuration(d time.Duration) string { return d.Round(time.Second).String() }

// formatTime formats ms since the epoch as RFC 3339 in UTC.
func formatTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }

func (k jobKind) String() string {
	switch k {
	case jobDown:
		return eventDown
	case jobRecovered:
		return eventRecovered
	default:
		return "release"
	}
}
