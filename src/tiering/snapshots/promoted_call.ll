; ModuleID = 'job'
source_filename = "indirect.ll"

define i64 @apply.tj1(ptr %f, ptr %a, i64 %n) !prof !27 {
entry:
  %np = icmp sgt i64 %n, 0
  br i1 %np, label %loop.preheader, label %entry.exit_crit_edge, !prof !28

entry.exit_crit_edge:                             ; preds = %entry
  br label %exit

loop.preheader:                                   ; preds = %entry
  br label %tj.head

tj.head:                                          ; preds = %loop.loop_crit_edge, %loop.preheader
  %0 = phi i64 [ %i.next, %loop.loop_crit_edge ], [ 0, %loop.preheader ]
  %1 = phi i64 [ %s.next, %loop.loop_crit_edge ], [ 0, %loop.preheader ]
  %2 = getelementptr inbounds i64, ptr %a, i64 %0
  %3 = load i64, ptr %2, align 8
  %tj.icp.is = icmp eq ptr %f, @twice
  br i1 %tj.icp.is, label %tj.icp.direct, label %tj.icp.next, !prof !29

tj.icp.direct:                                    ; preds = %tj.head
  %tj.icp.call = call i64 @twice(i64 %3)
  br label %loop

tj.icp.next:                                      ; preds = %tj.head
  %tj.tp = call ptr @llvm.thread.pointer()
  %tj.tp.int = ptrtoint ptr %tj.tp to i64
  %tj.cpu.at = add i64 %tj.tp.int, 8
  %tj.cpu.ptr = inttoptr i64 %tj.cpu.at to ptr
  %tj.cpu = load atomic i32, ptr %tj.cpu.ptr unordered, align 4
  %tj.cpu64 = zext i32 %tj.cpu to i64
  %tj.copy = and i64 %tj.cpu64, 3
  %tj.copy.at = shl i64 %tj.copy, 7
  %tj.counter = getelementptr i8, ptr inttoptr (i64 ADDR to ptr), i64 %tj.copy.at
  %tj.count = load atomic i64, ptr %tj.counter unordered, align 8
  %tj.count1 = add i64 %tj.count, 1
  store atomic i64 %tj.count1, ptr %tj.counter unordered, align 8
  %tj.tp1 = call ptr @llvm.thread.pointer()
  %tj.tp.int2 = ptrtoint ptr %tj.tp1 to i64
  %tj.cpu.at3 = add i64 %tj.tp.int2, 8
  %tj.cpu.ptr4 = inttoptr i64 %tj.cpu.at3 to ptr
  %tj.cpu5 = load atomic i32, ptr %tj.cpu.ptr4 unordered, align 4
  %tj.cpu646 = zext i32 %tj.cpu5 to i64
  %tj.copy7 = and i64 %tj.cpu646, 3
  %tj.copy.at8 = shl i64 %tj.copy7, 7
  %tj.counter9 = getelementptr i8, ptr inttoptr (i64 ADDR to ptr), i64 %tj.copy.at8
  %4 = atomicrmw add ptr %tj.counter9, i64 1 monotonic, align 8
  %tj.count110 = add i64 %4, 1
  %tj.icp.early = icmp ule i64 %tj.count110, 4096
  br i1 %tj.icp.early, label %tj.icp.record, label %tj.icp.fallback, !prof !30

tj.icp.record:                                    ; preds = %tj.icp.next
  %tj.icp.target = ptrtoint ptr %f to i64
  %tj.tp11 = call ptr @llvm.thread.pointer()
  %tj.tp.int12 = ptrtoint ptr %tj.tp11 to i64
  %tj.cpu.at13 = add i64 %tj.tp.int12, 8
  %tj.cpu.ptr14 = inttoptr i64 %tj.cpu.at13 to ptr
  %tj.cpu15 = load atomic i32, ptr %tj.cpu.ptr14 unordered, align 4
  %tj.cpu6416 = zext i32 %tj.cpu15 to i64
  %tj.copy17 = and i64 %tj.cpu6416, 3
  %tj.copy.at18 = shl i64 %tj.copy17, 9
  %tj.counter19 = getelementptr i8, ptr inttoptr (i64 ADDR to ptr), i64 %tj.copy.at18
  call void inttoptr (i64 ADDR to ptr)(ptr %tj.counter19, i64 %tj.icp.target)
  br label %tj.icp.fallback

tj.icp.fallback:                                  ; preds = %tj.icp.record, %tj.icp.next
  %5 = call i64 %f(i64 %3)
  br label %loop

loop:                                             ; preds = %tj.icp.fallback, %tj.icp.direct
  %tj.icp.result = phi i64 [ %tj.icp.call, %tj.icp.direct ], [ %5, %tj.icp.fallback ]
  %s.next = add i64 %1, %tj.icp.result
  %i.next = add nuw nsw i64 %0, 1
  %done = icmp eq i64 %i.next, %n
  br i1 %done, label %exit.loopexit, label %loop.loop_crit_edge, !prof !31

loop.loop_crit_edge:                              ; preds = %loop
  br label %tj.head

exit.loopexit:                                    ; preds = %loop
  br label %exit

exit:                                             ; preds = %exit.loopexit, %entry.exit_crit_edge
  %res = phi i64 [ 0, %entry.exit_crit_edge ], [ %s.next, %exit.loopexit ]
  ret i64 %res
}

define available_externally i64 @twice(i64 %x) {
  %y = shl i64 %x, 1
  ret i64 %y
}

declare i64 @negate(i64)

; Function Attrs: nocallback nofree nosync nounwind willreturn memory(none)
declare ptr @llvm.thread.pointer() #0

declare i64 @apply(ptr, ptr, i64)

attributes #0 = { nocallback nofree nosync nounwind willreturn memory(none) }

!llvm.module.flags = !{!0}

!0 = !{i32 1, !"ProfileSummary", !1}
!1 = !{!2, !3, !4, !5, !6, !7, !8, !9}
!2 = !{!"ProfileFormat", !"InstrProf"}
!3 = !{!"TotalCount", i64 2010}
!4 = !{!"MaxCount", i64 990}
!5 = !{!"MaxInternalCount", i64 990}
!6 = !{!"MaxFunctionCount", i64 10}
!7 = !{!"NumCounts", i64 8}
!8 = !{!"NumFunctions", i64 3}
!9 = !{!"DetailedSummary", !10}
!10 = !{!11, !12, !13, !14, !15, !16, !17, !18, !19, !20, !21, !22, !23, !24, !25, !26}
!11 = !{i32 10000, i64 990, i32 1}
!12 = !{i32 100000, i64 990, i32 1}
!13 = !{i32 200000, i64 990, i32 1}
!14 = !{i32 300000, i64 990, i32 1}
!15 = !{i32 400000, i64 990, i32 1}
!16 = !{i32 500000, i64 990, i32 2}
!17 = !{i32 600000, i64 990, i32 2}
!18 = !{i32 700000, i64 990, i32 2}
!19 = !{i32 800000, i64 990, i32 2}
!20 = !{i32 900000, i64 990, i32 2}
!21 = !{i32 950000, i64 990, i32 2}
!22 = !{i32 990000, i64 10, i32 3}
!23 = !{i32 999000, i64 10, i32 5}
!24 = !{i32 999900, i64 10, i32 5}
!25 = !{i32 999990, i64 10, i32 5}
!26 = !{i32 999999, i64 10, i32 5}
!27 = !{!"function_entry_count", i64 10}
!28 = !{!"branch_weights", i32 10, i32 0}
!29 = !{!"branch_weights", i32 990, i32 10}
!30 = !{!"branch_weights", i32 1, i32 1000}
!31 = !{!"branch_weights", i32 10, i32 990}
