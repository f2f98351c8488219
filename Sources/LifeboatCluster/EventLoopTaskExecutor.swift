public import NIOCore

/// Runs a task's jobs on one NIO event loop instead of the cooperative pool, so a thread that
/// blocks on the task's result (`EtcdClient.blocking`) never waits for a pool thread it may be
/// occupying itself.
final class EventLoopTaskExecutor: TaskExecutor {
    let eventLoop: any EventLoop

    init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
