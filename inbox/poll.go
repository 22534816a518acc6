package inbox

import (
	"context"
	"time"
)

// poll runs round at once, then whenever wake fires and every interval.
// While round fails it waits a backoff instead, from minBackoff doubling to
// maxBackoff, which a wake does not cut short; failed hears of each
// failure. It returns when ctx ends.
func poll(ctx context.Context, wake <-chan struct{}, interval, minBackoff, maxBackoff time.Duration, round func(context.Context) error, failed func(err error, retryIn time.Duration)) {
	backoff := minBackoff
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-timer.C:
		}
		wait := interval
		if err := round(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failed(err, backoff)
			wait, backoff = backoff, min(2*backoff, maxBackoff)
			select {
			case <-wake:
			default:
			}
		} else {
			backoff = minBackoff
		}
		timer.Reset(wait)
	}
}
