//! Reading a consumer group's committed offsets through a coordinator that may be moving.

use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::{KafkaError as RdError, KafkaResult, RDKafkaErrorCode};

/// Whether `code` says the group's coordinator is moving or still loading its offsets: a
/// broker that just started (or took over `__consumer_offsets` partitions) answers so for a
/// moment, and asking again is the remedy (librdkafka does not retry OffsetFetch itself).
pub fn is_coordinator_moving(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::NotCoordinator | C::CoordinatorLoadInProgress | C::CoordinatorNotAvailable
    )
}

/// The committed offsets of `consumer`'s group for `partitions`, asking again while the
/// coordinator is moving, until `timeout` has passed in all; any other error is returned at
/// once. A partition whose element carries a coordinator error counts as the whole answer's.
pub fn committed_offsets<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    partitions: &TopicPartitionList,
    timeout: Duration,
) -> KafkaResult<TopicPartitionList> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(100);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let answer = consumer
            .committed_offsets(
                partitions.clone(),
                remaining.max(Duration::from_millis(100)),
            )
            .and_then(|list| match moving_element(&list) {
                Some(code) => Err(RdError::OffsetFetch(code)),
                None => Ok(list),
            });
        match answer {
            Err(e)
                if e.rdkafka_error_code().is_some_and(is_coordinator_moving)
                    && Instant::now() + pause < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(800));
            }
            other => return other,
        }
    }
}

fn moving_element(list: &TopicPartitionList) -> Option<RDKafkaErrorCode> {
    list.elements().iter().find_map(|element| {
        let code = element.error().err()?.rdkafka_error_code()?;
        is_coordinator_moving(code).then_some(code)
    })
}
